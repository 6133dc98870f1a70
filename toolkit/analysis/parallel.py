"""Where analysis tasks run: in-process, on joblib's threading or loky backends, or on a
dask.distributed cluster through joblib's dask backend (the ``[dask]`` extra).

Units of work are chunks of runs, a few per worker, not one tiny task per run: start-up and
transfer costs are paid per task. Results never depend on the choice: every random stream
comes from the data (seeds.py) and every sum is machine-independent (numerics.py), so a
worker's identity, count or machine cannot change a bit. Dask workers read the store by
path, so they must see the same folder (a shared filesystem; see the README).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from joblib import Parallel
from threadpoolctl import threadpool_limits

from ..errors import ToolkitError
from ..workers import worker_environment
from .options import AnalysisOptions

BACKENDS = ("threading", "loky", "dask")
T = TypeVar("T")


def chunks(items: Sequence[T], jobs: int, per_worker: int = 4, largest: int = 8) -> list[list[T]]:
    """Contiguous chunks: one for a single job, else at least ``per_worker`` per worker and at
    most ``largest`` items each, so that a slow worker holds back the end by a few items only
    (measured: 125-run chunks left one core idle for seconds at 1,000 runs)."""
    items = list(items)
    if not items:
        return []
    count = 1 if jobs == 1 else min(len(items), max(max(1, jobs) * per_worker, -(-len(items) // largest)))
    size = -(-len(items) // count)
    return [items[i : i + size] for i in range(0, len(items), size)]


def run_parallel(tasks: list, options: AnalysisOptions) -> list[Any]:
    """Run joblib ``delayed`` tasks; one job and no scheduler runs in-process (no pool start-up).

    With several workers each gets one BLAS thread, so they do not fight over the cores;
    bootstrap products are exact (numerics.exact_products), so this is a speed choice only."""
    jobs, backend, scheduler = options.jobs, options.backend, options.scheduler
    if backend == "dask" or scheduler:
        return _run_dask(tasks, jobs, scheduler)
    if backend not in (None, "threading", "loky", "multiprocessing", "sequential"):
        raise ToolkitError(f"unknown parallel backend {backend!r} (choose from {', '.join(BACKENDS)})")
    parallel = Parallel(n_jobs=jobs, backend=backend if jobs != 1 else "sequential")
    with threadpool_limits(limits=1 if jobs != 1 else None, user_api="blas"), worker_environment():
        return parallel(tasks)


def _run_dask(tasks: list, jobs: int, scheduler: str | None) -> list[Any]:
    try:
        from dask.distributed import Client
        from joblib import parallel_config
    except ImportError:
        raise ToolkitError("the dask backend needs the [dask] extra: pip install -e '.[dask]'") from None
    if not scheduler:
        raise ToolkitError("--parallel-backend dask needs --scheduler ADDRESS (a running dask.distributed scheduler)")
    try:
        client = Client(scheduler, timeout=30)
    except OSError as exc:
        raise ToolkitError(f"cannot reach the dask scheduler at {scheduler}: {exc}") from None
    try:
        with parallel_config(backend="dask", n_jobs=-1 if jobs == 1 else jobs):
            return Parallel()(tasks)
    finally:
        client.close()
