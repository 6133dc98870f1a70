"""From stored rows to a dense rating-count tensor, the only input the metrics need.

Ratings take K = scale points values, so a persona x item cell is fully described by its
count vector: ``counts[p, q, k]`` = number of valid repetitions that answered scale[k].
Every statistic below (mean, ddof=1 std, bootstrap resamples) is a function of it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pyarrow.compute as pc

from ..errors import ToolkitError
from ..protocol.instrument import Instrument
from ..store import RunManifest, Store
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
    persona, every = (np.asarray(pc.fill_null(table[c], -1).to_numpy(), dtype=np.int64)
                      for c in ("persona_id", "item_id"))
    rating = np.asarray(table["rating"].to_numpy(), dtype=np.int64)
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
