"""Why a claim fails: look for the data that does reproduce the printed number.

A printed value that no longer matches its run often matches another one: a table computed
before the data were re-collected, a row copied from a neighbouring model, the wrong
temperature. For every FAIL, each other run the audit analysed (and, for catalogued datasets,
each other catalogued version of that model's file) is asked the same question with the
claim's own tolerance; the ones that answer are named in the claim's note.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from .claims import SELF_METRICS, VARIANT_METRICS, Claim

MAX_NAMED = 3


@dataclass
class Candidates:
    """Frames of analysed runs to search, and how to name a run for a reader."""

    metrics: pl.DataFrame
    comparison: pl.DataFrame
    profiles: pl.DataFrame
    labels: dict[str, str]  # run id -> description (catalogued file and commit), when it has one

    def name(self, run_id: str) -> str:
        return self.labels.get(run_id, f"run {run_id}")


def _frame_for(c: Claim, cand: Candidates) -> tuple[pl.DataFrame, str]:
    if c.metric in SELF_METRICS:
        return cand.profiles, "mean" if c.metric == "profile_mean" else "std"
    if c.metric.startswith("delta"):
        return cand.comparison, c.metric
    return cand.metrics, c.metric


def explain(table: pl.DataFrame, claims: list[Claim], cand: Candidates) -> pl.DataFrame:
    """``table`` with a note on each FAIL whose printed value another run reproduces."""
    by_id = {c.id: c for c in claims}
    notes = table["note"].to_list()
    for i, (cid, status) in enumerate(zip(table["id"], table["status"])):
        c = by_id.get(cid)
        if status != "FAIL" or c is None or c.metric in VARIANT_METRICS or c.metric.startswith("excess"):
            continue
        frame, column = _frame_for(c, cand)
        if not len(frame) or column not in frame.columns:
            continue
        own = (pl.col("model") == c.model) & (pl.col("variant") == c.variant)
        if c.temperature is not None:
            own = own & (pl.col("temperature") == float(c.temperature))
        hits = frame.filter(~own & (pl.col("group") == c.group) & pl.col(column).is_not_null()
                            & ((pl.col(column) - c.value).abs() <= c.allowed() * (1 + 1e-9)))
        if not len(hits):
            continue
        named = [f"{cand.name(r['run_id'])} ({column} = {r[column]:.6g})"
                 for r in hits.sort("run_id").head(MAX_NAMED).iter_rows(named=True)]
        more = f" and {len(hits) - MAX_NAMED} more" if len(hits) > MAX_NAMED else ""
        notes[i] = "printed value reproduced by " + "; ".join(named) + more
    return table.with_columns(pl.Series("note", notes, dtype=pl.String))
