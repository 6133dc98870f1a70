"""The joblib backend of the fork server, apart from pool.py so that a one-worker analysis,
which never starts a pool, never imports joblib."""

from __future__ import annotations

from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing.context import BaseContext
from typing import Any

from joblib.parallel import ParallelBackendBase


class ForkServerBackend(ParallelBackendBase):  # type: ignore[misc]  # joblib has no type hints
    """joblib backend: a ``concurrent.futures`` process pool whose workers fork from the fork
    server (toolkit.workers.fork_server).

    Why not joblib's multiprocessing backend on the same context: when one of its workers dies
    mid-task (kill -9, the out-of-memory killer), multiprocessing.Pool replaces the worker and
    waits for the lost task for ever. A ProcessPoolExecutor marks itself broken instead, and
    the call fails at once (tests/test_parallel.py kills a worker)."""

    supports_retrieve_callback = True

    def __init__(self, context: BaseContext, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.context = context
        self.pool: ProcessPoolExecutor | None = None

    def effective_n_jobs(self, n_jobs: int) -> int:
        return max(1, n_jobs)

    def configure(self, n_jobs: int = 1, parallel: Any = None, **_: Any) -> int:
        self.parallel = parallel
        n = self.effective_n_jobs(n_jobs)
        self.pool = ProcessPoolExecutor(n, mp_context=self.context)
        return n

    def submit(self, func: Any, callback: Any = None) -> Future[Any]:
        assert self.pool is not None
        future = self.pool.submit(func)
        if callback is not None:
            future.add_done_callback(callback)
        return future

    def retrieve_result_callback(self, out: Future[Any]) -> Any:
        return out.result()

    def terminate(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """Stop at once: results still running are not wanted (an error, or Ctrl-C). Idle
        workers would otherwise wait for work, and the exit of a process that still has
        children waits with them."""
        pool, self.pool = self.pool, None
        if pool is not None:
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.kill()
            pool.shutdown(wait=True, cancel_futures=True)
        if ensure_ready:
            self.configure(n_jobs=self.parallel.n_jobs, parallel=self.parallel)
