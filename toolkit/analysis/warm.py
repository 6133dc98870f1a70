"""A throwaway analysis of a small synthetic run, imported by the fork server
(toolkit.workers) after the scoring code.

Why: every worker forked from the server inherits what this leaves behind (numpy's and
Arrow's first-call set-up, the bootstrap's alias tables for common cells, touched code
paths), instead of paying for it again in each worker (measured: a worker's first runs took
3-4 times the steady cost). The server has time for it: it is ready before the CLI process
has imported polars. Nothing here may start a thread (the server must stay single-threaded
to be forked safely): BLAS runs on one thread by the server's environment, Arrow reads
without its thread pool, and polars is never imported. Its numbers are never used, and the
caches it fills are pure functions of their keys.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..numerics import exp
from ..store.arrays import only
from ..store.generations import has_repeated_slots, slot_arrays
from .metrics import ItemGroups, estimate


def warm_up(personas: int = 100, items: int = 30, repetitions: int = 10) -> None:
    rng = np.random.default_rng(0)
    centre = rng.uniform(0.5, 4.5, size=(personas, items, 1))
    z = (np.arange(6) - centre) / 0.8
    spread = exp(-0.5 * (z * z))
    counts = np.stack([rng.multinomial(repetitions, p / p.sum()) for p in spread.reshape(-1, 6)])
    cells = personas * items
    table = pa.table({  # the columns the analysis reads, in the store's row layout
        "run_id": pa.array(["warm"] * (cells * repetitions)),
        "persona_id": pa.array(np.repeat(np.arange(personas), items * repetitions), pa.int32()),
        "item_id": pa.array(np.tile(np.repeat(np.arange(items), repetitions), personas), pa.int32()),
        "repetition": pa.array(np.tile(np.arange(repetitions), cells), pa.int32()),
        "rating": pa.array(np.repeat(np.tile(np.arange(6), cells), counts.ravel()), pa.int16()),
    })
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    read = pq.ParquetFile(pa.BufferReader(sink.getvalue())).read(use_threads=False)
    only(read["run_id"], "warm")
    has_repeated_slots(slot_arrays(read))
    estimate(counts.reshape(personas, items, 6), np.arange(6), ItemGroups(np.arange(items) % 5, 5),
             persona_draws=200, rerun_draws=50, rng_persona=rng, rng_rerun=rng)


warm_up()
