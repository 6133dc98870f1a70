"""Draft a claims file from the current analysis: what an author ships beside a paper.

Every claim names its run by model, variant and temperature (and group), holds the value as
it would be printed (``decimals`` after the point, so the tolerance is half a unit of the
last one) and is checked by `toolkit audit --claims` or `toolkit check` like any other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..analysis import analyze, compare
from ..analysis.options import DEFAULT, AnalysisOptions
from ..errors import ToolkitError
from ..store import Store
from ..store.atomic import atomic_write_bytes
from ..store.output import check_output_file
from ..store.query import EVERY_RUN, Selection
from .claims import FORMAT, is_claims_file

ANALYZE_METRICS = ("S", "S_se", "R", "R_se", "sigma_bar", "sigma_bar_se")
DELTA_METRICS = ("delta_S_pct", "delta_R_pct", "delta_sigma_bar_pct")


def draft_claims(store: Store, *, metrics: list[str], decimals: int = 2, by_group: bool = False,
                 baseline: str = "base", paper: str = "", options: AnalysisOptions = DEFAULT,
                 selection: Selection = EVERY_RUN) -> dict[str, Any]:
    unknown = [m for m in metrics if m not in ANALYZE_METRICS + DELTA_METRICS]
    if unknown or not metrics:
        raise ToolkitError(f"--metrics: cannot claim {', '.join(unknown) or 'nothing'} (choose from "
                           f"{', '.join(ANALYZE_METRICS + DELTA_METRICS)})")
    analysis = analyze(store, selection, by_group=by_group, options=options, on_error="skip")
    if analysis.skipped:
        raise ToolkitError(f"cannot draft claims while a selected run cannot be analyzed: {analysis.skipped[0]}")
    frame = analysis.frame
    if any(m in DELTA_METRICS for m in metrics):
        deltas = compare(frame, baseline=baseline).frame.select("model", "variant", "temperature", "group",
                                                                *DELTA_METRICS)
        frame = frame.join(deltas, on=["model", "variant", "temperature", "group"], how="left")
    claims = []
    for row in frame.sort(["model", "variant", "temperature", "group"]).iter_rows(named=True):
        for metric in metrics:
            value = row.get(metric)
            if value is None or (metric in DELTA_METRICS and row["variant"] == baseline):
                continue  # no change from itself to claim
            key = f"{row['model']}/{row['variant']}/T{row['temperature']:g}/{row['group']}/{metric}"
            claims.append({"id": key, "table": "analyze", "model": row["model"], "variant": row["variant"],
                           "temperature": row["temperature"], "group": row["group"], "metric": metric,
                           "printed": f"{value:.{decimals}f}"})
    if not claims:
        raise ToolkitError("nothing to claim: no selected run has these metrics")
    return {"format": FORMAT, "paper": paper, "dataset": None, "baseline": baseline,
            "notes": f"drafted by `toolkit claims draft` from {frame['run_id'].n_unique()} runs; "
                     f"{decimals} decimals, tolerance half a unit of the last",
            "claims": claims}


def write_draft(store: Store, out: str | Path, **draft: Any) -> tuple[Path, int]:
    """Draft claims (``draft``: draft_claims' arguments) into the file ``out``: the name is checked
    before any work (an existing file must be a claims file), the file written atomically.
    Returns the file and the number of claims."""
    path = check_output_file(out, ours=is_claims_file)
    doc = draft_claims(store, **draft)
    atomic_write_bytes(path, (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
    return path, len(doc["claims"])
