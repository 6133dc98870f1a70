"""A throwaway analysis of a small synthetic run, imported by the fork server
(toolkit.workers) after the analysis itself.

Why: every worker forked from the server inherits what this leaves behind (numpy's first-call
set-up, the bootstrap's alias tables for common cells, touched code paths), instead of paying
for it again in each worker (measured: a worker's first runs took 3-4 times the steady cost).
numpy only, and BLAS limited to one thread by the server's environment: the server must stay
single-threaded, which forking it safely demands, so polars and arrow (thread pools) are not
touched. Its numbers are never used, and the caches it fills are pure functions of their keys.
"""

from __future__ import annotations

import numpy as np

from .metrics import ItemGroups, estimate


def warm_up(personas: int = 12, items: int = 30, repetitions: int = 10) -> None:
    rng = np.random.default_rng(0)
    centre = rng.uniform(1.0, 4.0, size=(personas, items, 1))
    spread = np.exp(-0.5 * ((np.arange(6) - centre) / 0.8) ** 2)
    counts = np.stack([rng.multinomial(repetitions, p / p.sum()) for p in spread.reshape(-1, 6)])
    estimate(counts.reshape(personas, items, 6), np.arange(6), ItemGroups(np.arange(items) % 5, 5),
             persona_draws=50, rerun_draws=50, rng_persona=rng, rng_rerun=rng)


warm_up()
