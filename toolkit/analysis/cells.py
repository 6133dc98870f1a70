"""From stored rows to a dense rating-count tensor, the only input the metrics need.

Ratings take K = scale points values, so a persona x item cell is fully described by its
count vector: ``counts[p, q, k]`` = number of valid repetitions that answered scale[k].
Every statistic below (mean, ddof=1 std, bootstrap resamples) is a function of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from ..errors import ToolkitError
from ..instrument import Instrument
from ..store import RunManifest, Store
from .seeds import input_digest


@dataclass
class RunCounts:
    manifest: RunManifest
    instrument: Instrument
    persona_ids: np.ndarray  # (P,) every persona id seen in the run, sorted
    counts: np.ndarray  # (P, Q, K) int64, items in instrument order

    @property
    def input_digest(self) -> str:
        """What the seeds derive from: the count tensor itself, never a manifest field."""
        return input_digest(self.instrument.digest, self.persona_ids.astype(np.int64), self.counts.astype(np.int64))

    @property
    def valid_personas(self) -> np.ndarray:
        """Mask of personas with at least one valid rating on every item (the published rule)."""
        return (self.counts.sum(axis=2) > 0).all(axis=1)


def load_counts(store: Store, manifest: RunManifest) -> RunCounts:
    instrument = store.instrument(manifest.instrument["digest"])
    table = store.read_run(manifest, ["persona_id", "item_id", "rating"])
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    if manifest.mode == "self":
        df = df.with_columns(pl.col("persona_id").fill_null(-1))
    persona_ids = np.unique(df["persona_id"].to_numpy())
    item_ids = np.asarray(instrument.item_ids)
    order = np.argsort(item_ids)
    valid = df.filter(pl.col("rating") >= 0)
    p = np.searchsorted(persona_ids, valid["persona_id"].to_numpy())
    items = valid["item_id"].to_numpy()
    pos = np.searchsorted(item_ids[order], items)
    pos = np.clip(pos, 0, len(item_ids) - 1)
    if not np.array_equal(item_ids[order][pos], items):
        raise ToolkitError(f"run {manifest.run_id} holds item ids outside its instrument")
    q = order[pos]
    k = valid["rating"].to_numpy().astype(np.int64) - instrument.scale_min
    if k.size and (k.max() >= instrument.n_points):
        raise ToolkitError(f"run {manifest.run_id} holds ratings above the scale maximum")
    P, Q, K = len(persona_ids), len(item_ids), instrument.n_points
    flat = (p * Q + q) * K + k
    counts = np.bincount(flat, minlength=P * Q * K).reshape(P, Q, K)
    return RunCounts(manifest, instrument, persona_ids, counts)
