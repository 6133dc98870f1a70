"""From stored rows to a dense rating-count tensor, the only input the metrics need.

Ratings take K = scale points values, so a persona x item cell is fully described by its
count vector: ``counts[p, q, k]`` = number of valid repetitions that answered scale[k].
Every statistic below (mean, ddof=1 std, bootstrap resamples) is a function of it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ToolkitError
from ..instrument import Instrument
from ..store import RunManifest, Store
from .seeds import input_digest

if TYPE_CHECKING:
    import polars as pl


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


def slot_arrays(table: pa.Table) -> list[np.ndarray]:
    """The (persona, item, repetition) columns as int64 arrays; a self run's null persona is -1."""
    return [np.asarray(pc.fill_null(table[c], -1).to_numpy(), dtype=np.int64) for c in SLOT]


def has_repeated_slots(slots: list[np.ndarray]) -> bool:
    """Whether some (persona, item, repetition) slot holds several rows: one bincount."""
    n = len(slots[0])
    if n < 2:
        return False
    span = [int(c.max()) - int(c.min()) + 1 for c in slots]
    if np.prod(span, dtype=np.float64) > 8 * n + (1 << 20):  # sparse ids: sort instead
        return len(np.unique(np.stack(slots, axis=1), axis=0)) != n
    key = ((slots[0] - slots[0].min()) * span[1] + slots[1] - slots[1].min()) * span[2] + slots[2] - slots[2].min()
    return bool(np.bincount(key).max() > 1)


def newest_rows(store: Store, manifest: RunManifest, slots: list[np.ndarray]) -> np.ndarray | None:
    """Positions of the rows analyzed, one per slot, or None when no slot holds several (all are).

    After `record --refresh` a slot holds several answers, and the newest (latest
    ``collected_at``, a missing one oldest; request key breaks ties) is the one analyzed, in
    slot order. Checked on the slot columns alone, so a run without refreshed slots costs one
    bincount, not a re-read."""
    if not has_repeated_slots(slots):
        return None
    extra = store.read_run(manifest, ["collected_at", "request_key"])
    when = np.asarray(pc.fill_null(extra["collected_at"], "").to_numpy(zero_copy_only=False), dtype=str)
    key = np.asarray(extra["request_key"].to_numpy(zero_copy_only=False), dtype=str)
    order = np.lexsort((key, when, slots[2], slots[1], slots[0]))
    ordered = [c[order] for c in slots]
    last = np.ones(len(order), dtype=bool)  # the last row of each slot in that order
    last[:-1] = np.any([c[1:] != c[:-1] for c in ordered], axis=0)
    return order[last]


def newest_per_slot(store: Store, manifest: RunManifest, df: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """``newest_rows`` of a data frame of the run's rows (read in store order)."""
    keep = newest_rows(store, manifest, slot_arrays(df.select(SLOT).to_arrow()))
    if keep is None:
        return df
    out = df.select(columns)[keep]
    return out.with_columns(out["persona_id"].fill_null(-1)) if manifest.mode == "self" else out


def load_counts(store: Store, manifest: RunManifest) -> RunCounts:
    """The run's count tensor from its verified rows (numpy and arrow only: analysis workers
    forked from the fork server never need polars, whose import starts threads)."""
    instrument = store.instrument(manifest.instrument["digest"])
    table = store.read_run(manifest, ["persona_id", "item_id", "repetition", "rating"])
    slots = slot_arrays(table)
    rating = np.asarray(table["rating"].to_numpy(), dtype=np.int64)
    persona, every = slots[0], slots[1]
    keep = newest_rows(store, manifest, slots)
    if keep is not None:
        persona, every, rating = persona[keep], every[keep], rating[keep]
    persona_ids = np.unique(persona)
    item_ids = np.asarray(instrument.item_ids)
    order = np.argsort(item_ids)
    pos_all = np.clip(np.searchsorted(item_ids[order], every), 0, len(item_ids) - 1)
    if not np.array_equal(item_ids[order][pos_all], every):
        raise ToolkitError(f"run {manifest.run_id} holds item ids outside its instrument")
    asked = np.zeros(len(item_ids), bool)
    asked[order[pos_all]] = True  # items with any row, valid or not
    valid = rating >= 0
    p = np.searchsorted(persona_ids, persona[valid])
    q = order[pos_all[valid]]
    k = rating[valid] - instrument.scale_min
    if k.size and (k.max() >= instrument.n_points):
        raise ToolkitError(f"run {manifest.run_id} holds ratings above the scale maximum")
    P, Q, K = len(persona_ids), len(item_ids), instrument.n_points
    flat = (p * Q + q) * K + k
    counts = np.bincount(flat, minlength=P * Q * K).reshape(P, Q, K)
    if asked.any() and not asked.all():  # a run recorded with --items: its instrument is the items it asked
        subset = replace(instrument, items=tuple(it for it, a in zip(instrument.items, asked) if a))
        return RunCounts(manifest, subset, persona_ids, counts[:, asked], Q)
    return RunCounts(manifest, instrument, persona_ids, counts, Q)
