"""From stored rows to a dense rating-count tensor, the only input the metrics need.

Ratings take K = scale points values, so a persona x item cell is fully described by its
count vector: ``counts[p, q, k]`` = number of valid repetitions that answered scale[k].
Every statistic below (mean, ddof=1 std, bootstrap resamples) is a function of it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ToolkitError
from ..protocol.instrument import Instrument
from ..store import RunManifest, Store
from ..store.arrays import int64_filled
from .seeds import input_digest

if TYPE_CHECKING:
    pass


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
        return np.asarray((self.counts.sum(axis=2) > 0).all(axis=1))


def load_counts(store: Store, manifest: RunManifest) -> RunCounts:
    """The run's count tensor from its verified rows (numpy and arrow only: analysis workers
    forked from the fork server never need polars, whose import starts threads)."""
    instrument = store.instrument(manifest.instrument["digest"])
    table = store.read_run(manifest, ["persona_id", "item_id", "rating"], generations="newest")
    persona, every = (int64_filled(table[c], -1) for c in ("persona_id", "item_id"))
    rating = np.asarray(table["rating"].to_numpy(), dtype=np.int64)
    persona_ids, p_all = _positions(persona)
    item_ids = np.asarray(instrument.item_ids)
    q_all = _item_positions(item_ids, every)
    if q_all is None:
        raise ToolkitError(f"run {manifest.run_id} holds item ids outside its instrument")
    asked = np.zeros(len(item_ids), bool)
    asked[q_all] = True  # items with any row, valid or not
    valid = rating >= 0
    p, q = p_all[valid], q_all[valid]
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


DENSE_SPAN = 1 << 20  # ids spanning at most this many values are looked up in a table, not sorted


def _positions(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ids, sorted, and each row's position among them (np.unique's answer; by a
    table when the ids are dense, as persona ids are: 0.4 ms -> 0.1 ms for 30,000 rows)."""
    if ids.size and int(ids.max()) - int(ids.min()) < DENSE_SPAN:
        low = int(ids.min())
        seen = np.zeros(int(ids.max()) - low + 1, dtype=bool)
        seen[ids - low] = True
        distinct = np.flatnonzero(seen)
        rank = np.cumsum(seen) - 1
        return distinct + low, rank[ids - low]
    distinct, inverse = np.unique(ids, return_inverse=True)
    return distinct, inverse.ravel()


def _item_positions(item_ids: np.ndarray, rows: np.ndarray) -> np.ndarray | None:
    """Each row's item position in the instrument (``item_ids`` distinct); None when a row
    names an item outside it."""
    if not rows.size:
        return rows.astype(np.intp)
    low, high = int(min(item_ids.min(), rows.min())), int(max(item_ids.max(), rows.max()))
    if high - low < DENSE_SPAN:
        table = np.full(high - low + 1, -1, dtype=np.intp)
        table[item_ids - low] = np.arange(len(item_ids))
        pos = table[rows - low]
        return None if (pos < 0).any() else pos
    order = np.argsort(item_ids)
    at = np.clip(np.searchsorted(item_ids[order], rows), 0, len(item_ids) - 1)
    return None if not np.array_equal(item_ids[order][at], rows) else order[at]
