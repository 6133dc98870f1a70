"""One row per run: what `runs` prints."""

from __future__ import annotations

import polars as pl

from .arrays import int64_filled
from .manifest import RunManifest
from .query import EVERY_RUN, Selection
from .schema import TOKEN_COLUMNS
from .store import Store


def run_table(store: Store, selection: Selection = EVERY_RUN) -> pl.DataFrame:
    """The selected runs (an empty store lists none), one row each; ``valid_share`` is null
    for logprob runs, where it does not apply."""
    rows = []
    for m in selection.resolve(store, empty_ok=True):
        valid_share = None  # a logprob run has digit probabilities, not a sampled rating to validate
        if m.mode != "logprob":
            ratings = store.read_run(m, ["rating"], generations="newest")["rating"]  # as analyze counts
            valid = int((int64_filled(ratings, -1) >= 0).sum())
            valid_share = valid / len(ratings) if len(ratings) else float("nan")
        rows.append({
            "run_id": m.run_id, "model": m.model, "variant": m.variant, "temperature": m.temperature,
            "mode": m.mode, "rows": m.rows, "fingerprint": m.fingerprint,
            "valid_share": valid_share, "segments": len(m.segments),
            "instrument": m.instrument["name"], **_tokens(store, m),
        })
    schema = {"run_id": pl.String, "model": pl.String, "variant": pl.String, "temperature": pl.Float64,
              "mode": pl.String, "rows": pl.Int64, "fingerprint": pl.String, "valid_share": pl.Float64,
              "segments": pl.Int64, "instrument": pl.String, **dict.fromkeys(TOKEN_COLUMNS, pl.Int64)}
    return pl.DataFrame(rows, schema=schema)


def _tokens(store: Store, m: RunManifest) -> dict[str, int | None]:
    """Tokens the run cost, summed over every stored row of every generation (each was paid
    for); null for a count no row reports (runs recorded before schema version 3, imports)."""
    t = store.read_run(m, list(TOKEN_COLUMNS), generations="all")
    return {c: (int(int64_filled(t[c], 0).sum()) if t[c].null_count < len(t) else None) for c in TOKEN_COLUMNS}
