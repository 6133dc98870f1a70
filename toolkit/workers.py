"""Settings shared by every pool of worker processes (import, analysis), and the fork server
that starts analysis workers.

This module stays light (standard library only): the CLI starts the fork server from here
before it imports numpy, polars and pyarrow itself, so that both imports run at once.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.context import BaseContext

# What worker processes started inside ``worker_environment`` get, unless the user set it.
WORKER_ENV = {
    # As many workers as cores: more polars threads per worker only fight over the cores
    # (measured on import: 10% less wall time).
    "POLARS_MAX_THREADS": "1",
    # polars' jemalloc keeps freed pages for reuse instead of returning them to the system
    # after 10 s: a worker handles file after file of the same size, and each fresh page costs
    # a fault (measured on import: 6,600 -> 2,400 page faults and 24 -> 9 ms system time a file).
    "_RJEM_MALLOC_CONF": "dirty_decay_ms:-1,muzzy_decay_ms:-1",
}
# The fork server's own environment, whatever the user set: forking is only safe from a
# process with one thread, and these keep the server at one. OpenBLAS would start a thread
# pool when numpy loads, and Arrow's jemalloc a background purging thread when pyarrow loads.
# The workers inherit them: one BLAS thread each, as many workers as cores (products are exact,
# analysis.numerics, so this is a speed setting only).
SERVER_ENV = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "JE_ARROW_MALLOC_CONF": "background_thread:false",
}
# What the fork server imports once, so that every worker forked from it starts with it: the
# calling program (multiprocessing imports it in each worker otherwise; like every start method
# but fork, this needs a script's work under ``if __name__ == "__main__":``), the scoring code
# (numpy and arrow, never polars, whose import starts threads) and a warm-up.
ANALYSIS_PRELOAD = ("__main__", "toolkit.analysis.scoring", "toolkit.analysis.warm")


@contextmanager
def worker_environment(values: dict[str, str] | None = None, *, override: bool = False) -> Iterator[None]:
    """Environment for worker processes spawned inside (they copy it at start): WORKER_ENV and
    ``values``, where the user has not set them (or in any case, with ``override``)."""
    wanted = WORKER_ENV | (values or {})
    saved = {k: os.environ.get(k) for k in wanted if override or k not in os.environ}
    os.environ.update({k: wanted[k] for k in saved})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def fork_server() -> BaseContext | None:
    """The multiprocessing context of a fork server that has imported the analysis, started
    now if it is not running; None where there is none (Windows) or it cannot start.

    Why: a spawned worker (joblib's loky) imports numpy, polars, pyarrow and the toolkit
    again, ~0.5 s of a core each, which on 2 cores ate most of what a second worker gains on
    100 runs. A worker forked from this server starts in milliseconds with the scoring code
    loaded.
    The server is a fresh interpreter kept at one thread (SERVER_ENV, and no polars), so
    forking it is safe, unlike forking a process whose thread pools may hold a lock (a test
    holds it to one thread). It lives as long as this process.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return None
    from multiprocessing import forkserver

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(ANALYSIS_PRELOAD))  # read when the server starts
    try:
        with worker_environment(SERVER_ENV, override=True):
            forkserver.ensure_running()  # returns at once when it runs already
    except OSError:
        return None
    return context
