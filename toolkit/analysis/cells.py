"""From stored rows to a dense rating-count tensor, the only input the metrics need.

Ratings take K = scale points values, so a persona x item cell is fully described by its
count vector: ``counts[p, q, k]`` = number of valid repetitions that answered scale[k].
Every statistic below (mean, ddof=1 std, bootstrap resamples) is a function of it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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
    items_total: int = 0  # items of the full instrument (``instrument`` keeps only those the run asked)

    @property
    def partial(self) -> bool:
        """Recorded on a subset of the instrument's items (``--items``): analyzed on those."""
        return len(self.instrument.items) < self.items_total

    @property
    def input_digest(self) -> str:
        """What the seeds derive from: the count tensor itself, never a manifest field."""
        return input_digest(self.instrument.digest, self.persona_ids.astype(np.int64), self.counts.astype(np.int64))

    @property
    def valid_personas(self) -> np.ndarray:
        """Mask of personas with at least one valid rating on every item (the published rule)."""
        return (self.counts.sum(axis=2) > 0).all(axis=1)


SLOT = ["persona_id", "item_id", "repetition"]


def has_repeated_slots(df: pl.DataFrame) -> bool:
    """Whether some (persona, item, repetition) slot holds several rows: one bincount."""
    if df.height < 2:
        return False
    cols = [df[c].fill_null(-1).to_numpy().astype(np.int64) for c in SLOT]
    span = [int(c.max()) - int(c.min()) + 1 for c in cols]
    if np.prod(span, dtype=np.float64) > 8 * df.height + (1 << 20):  # sparse ids: sort instead
        return df.height != df.select(SLOT).n_unique()
    key = ((cols[0] - cols[0].min()) * span[1] + cols[1] - cols[1].min()) * span[2] + cols[2] - cols[2].min()
    return bool(np.bincount(key).max() > 1)


def newest_per_slot(store: Store, manifest: RunManifest, df: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """One row per slot: after `record --refresh` a slot holds several answers, and the newest
    (latest ``collected_at``; request key breaks ties) is the one analyzed. Checked on the
    slot columns alone, so a run without refreshed slots costs one bincount, not a re-read."""
    if not has_repeated_slots(df):
        return df
    full = pl.from_arrow(store.read_run(manifest, [*columns, "collected_at", "request_key"]))
    assert isinstance(full, pl.DataFrame)
    if manifest.mode == "self":
        full = full.with_columns(pl.col("persona_id").fill_null(-1))
    newest = full.sort([*SLOT, "collected_at", "request_key"], nulls_last=False).unique(SLOT, keep="last",
                                                                                        maintain_order=True)
    return newest.select(columns)


def load_counts(store: Store, manifest: RunManifest) -> RunCounts:
    instrument = store.instrument(manifest.instrument["digest"])
    columns = ["persona_id", "item_id", "repetition", "rating"]
    df = pl.from_arrow(store.read_run(manifest, columns))
    assert isinstance(df, pl.DataFrame)
    if manifest.mode == "self":
        df = df.with_columns(pl.col("persona_id").fill_null(-1))
    df = newest_per_slot(store, manifest, df, columns)
    persona_ids = np.unique(df["persona_id"].to_numpy())
    item_ids = np.asarray(instrument.item_ids)
    order = np.argsort(item_ids)
    every = df["item_id"].to_numpy()
    pos_all = np.clip(np.searchsorted(item_ids[order], every), 0, len(item_ids) - 1)
    if not np.array_equal(item_ids[order][pos_all], every):
        raise ToolkitError(f"run {manifest.run_id} holds item ids outside its instrument")
    asked = np.zeros(len(item_ids), bool)
    asked[order[pos_all]] = True  # items with any row, valid or not
    valid = df.filter(pl.col("rating") >= 0)
    p = np.searchsorted(persona_ids, valid["persona_id"].to_numpy())
    q = order[np.searchsorted(item_ids[order], valid["item_id"].to_numpy())]
    k = valid["rating"].to_numpy().astype(np.int64) - instrument.scale_min
    if k.size and (k.max() >= instrument.n_points):
        raise ToolkitError(f"run {manifest.run_id} holds ratings above the scale maximum")
    P, Q, K = len(persona_ids), len(item_ids), instrument.n_points
    flat = (p * Q + q) * K + k
    counts = np.bincount(flat, minlength=P * Q * K).reshape(P, Q, K)
    if asked.any() and not asked.all():  # a run recorded with --items: its instrument is the items it asked
        subset = replace(instrument, items=tuple(it for it, a in zip(instrument.items, asked) if a))
        return RunCounts(manifest, subset, persona_ids, counts[:, asked], Q)
    return RunCounts(manifest, instrument, persona_ids, counts, Q)
