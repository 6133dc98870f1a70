"""Which of a slot's answers counts: the newest-answer rule, in one place.

After `record --refresh` a slot (persona, item, repetition) holds several answers. Every reader
that counts or analyzes answers (analyze, curves, runs' valid share, the report's counts and
pages) reads through ``Store.read_run(..., generations="newest")``, which keeps one row per
slot: the newest (latest ``collected_at``, a missing one oldest; the request key breaks ties).
Readers that copy a run whole (bundles, export, verify) read every generation.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .arrays import int64_filled

GENERATIONS = ("all", "newest")
SLOT = ("persona_id", "item_id", "repetition")


def slot_arrays(table: pa.Table) -> list[np.ndarray]:
    """The (persona, item, repetition) columns as int64 arrays; a self run's null persona is -1."""
    return [int64_filled(table[c], -1) for c in SLOT]


def has_repeated_slots(slots: list[np.ndarray]) -> bool:
    """Whether some slot holds several rows: one bincount (a sort for sparse ids)."""
    n = len(slots[0])
    if n < 2:
        return False
    span = [int(c.max()) - int(c.min()) + 1 for c in slots]
    if np.prod(span, dtype=np.float64) > 8 * n + (1 << 20):  # sparse ids: sort instead
        return len(np.unique(np.stack(slots, axis=1), axis=0)) != n
    key = ((slots[0] - slots[0].min()) * span[1] + slots[1] - slots[1].min()) * span[2] + slots[2] - slots[2].min()
    return bool(np.bincount(key).max() > 1)


def newest_positions(slots: list[np.ndarray], collected_at: pa.ChunkedArray, request_key: pa.ChunkedArray,
                     ) -> np.ndarray:
    """Positions of the newest row of every slot, in slot order."""
    import pyarrow.compute as pc  # only where a slot holds several answers (record --refresh)

    when = np.asarray(pc.fill_null(collected_at, "").to_numpy(zero_copy_only=False), dtype=str)
    key = np.asarray(request_key.to_numpy(zero_copy_only=False), dtype=str)
    order = np.lexsort((key, when, slots[2], slots[1], slots[0]))
    ordered = [c[order] for c in slots]
    last = np.ones(len(order), dtype=bool)  # the last row of each slot in that order
    last[:-1] = np.any([c[1:] != c[:-1] for c in ordered], axis=0)
    return np.asarray(order[last])
