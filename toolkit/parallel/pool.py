"""Where tasks run: in-process; in worker processes forked from a fork server that has the
analysis imported (the default), or on joblib's loky or threading backends; or on a
dask.distributed cluster through joblib's dask backend (the ``[dask]`` extra).

Units of work are chunks of runs, a few per worker, not one tiny task per run: start-up and
transfer costs are paid per task. Results never depend on the choice: every random stream
comes from the data (seeds.py) and every sum is machine-independent (numerics.py), so a
worker's identity, count or machine cannot change a bit. Dask workers read the store by
path, so they must see the same folder (a shared filesystem; see the README).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, TypeVar, cast

from ..errors import ToolkitError, WorkerLost
from . import DEFAULT_BACKEND, check_workers
from .forkserver import fork_server, worker_environment

T = TypeVar("T")


def chunks(items: Sequence[T], jobs: int, per_worker: int = 4, largest: int = 4) -> list[list[T]]:
    """Contiguous chunks: one for a single job, else at least ``per_worker`` per worker and at
    most ``largest`` items each, so that a slow worker holds back the end by a few items only
    (measured: 125-run chunks left one core idle for seconds at 1,000 runs). Their number is a
    multiple of ``jobs`` and their sizes differ by one at most, so the workers finish together
    (100 runs on 2 workers: 26 chunks of 3 or 4, not 25 of 4 with one worker left alone at the end)."""
    items = list(items)
    if not items:
        return []
    if jobs == 1:
        return [items]
    count = min(len(items), max(jobs * per_worker, -(-len(items) // largest)))
    count = min(len(items), -(-count // jobs) * jobs)
    size, extra = divmod(len(items), count)
    bounds = [i * size + min(i, extra) for i in range(count + 1)]
    return [items[a:b] for a, b in pairwise(bounds)]


@dataclass(frozen=True)
class Workers:
    """How many workers, and where they run. Results never depend on it."""

    jobs: int = 1
    backend: str = DEFAULT_BACKEND
    scheduler: str | None = None  # dask.distributed scheduler address

    def __post_init__(self) -> None:
        check_workers(self.jobs, self.backend)

    def run(self, tasks: list[Any]) -> list[Any]:
        """Run joblib ``delayed`` tasks; one job and no scheduler runs in-process (no pool start-up).

        With several workers each gets one BLAS thread, so they do not fight over the cores;
        bootstrap products are exact (numerics.exact_products), so this is a speed choice only."""
        if self.backend == "dask" or self.scheduler:
            return _run_dask(tasks, self.jobs, self.scheduler)
        chosen: Any = self.backend if self.jobs != 1 and len(tasks) > 1 else "sequential"
        if chosen == "sequential":  # in this process, as joblib would run it, without importing joblib
            return [function(*args, **kwargs) for function, args, kwargs in tasks]
        from joblib import Parallel
        from threadpoolctl import threadpool_limits

        from .joblib_backend import ForkServerBackend

        if chosen == "forkserver":
            context = fork_server() if threading.current_thread() is threading.main_thread() else None
            chosen = ForkServerBackend(context) if context is not None else "loky"  # forks only from the main thread
        parallel = Parallel(n_jobs=self.jobs, backend=chosen)
        with threadpool_limits(limits=1 if self.jobs != 1 else None, user_api="blas"), worker_environment():
            try:
                return list(parallel(tasks))
            except BrokenProcessPool as exc:  # loky's TerminatedWorkerError is one too
                raise WorkerLost("a worker process stopped before it finished (killed, or out of memory?); "
                                 f"nothing was written: {' '.join(str(exc).split())}") from None
            finally:
                if isinstance(chosen, ForkServerBackend):  # after Ctrl-C or an error too: no worker outlives the call
                    chosen.abort_everything(ensure_ready=False)

    def stream(self, tasks: Iterable[Any]) -> Iterator[Any]:
        """Results one by one in task order, at most two tasks per worker ahead: memory stays
        bounded by a few results whatever the number of tasks (the import of many files)."""
        if self.jobs == 1:
            for function, args, kwargs in tasks:
                yield function(*args, **kwargs)
            return
        from joblib import Parallel

        backend = self.backend
        if backend in ("forkserver", "dask"):
            backend = "loky"  # the fork server preloads the analysis, not the readers
        with worker_environment():
            yield from Parallel(n_jobs=self.jobs, backend=backend, return_as="generator", pre_dispatch="2*n_jobs")(
                tasks)


def _run_dask(tasks: list[Any], jobs: int, scheduler: str | None) -> list[Any]:
    try:
        from dask.distributed import Client
        from joblib import Parallel, parallel_config
    except ImportError:
        raise ToolkitError("the dask backend needs the [dask] extra: pip install -e '.[dask]'") from None
    if not scheduler:
        raise ToolkitError("--parallel-backend dask needs --scheduler ADDRESS (a running dask.distributed scheduler)")
    try:
        client: Any = cast(Any, Client)(scheduler, timeout=30)
    except OSError as exc:
        raise ToolkitError(f"cannot reach the dask scheduler at {scheduler}: {exc}") from None
    try:
        with parallel_config(backend="dask", n_jobs=-1 if jobs == 1 else jobs):
            return list(Parallel()(tasks))
    finally:
        client.close()
