"""Where work runs: one ``Workers(jobs, backend, scheduler)`` (pool.py) used by the import and
by every analysis, and the fork server its default backend starts (forkserver.py).

This module stays light (no joblib, no numpy): the option parser reads the backend names and
the default from here, and the CLI starts the fork server before it imports the heavy
libraries itself.
"""

import functools
from typing import Any

BACKENDS = ("forkserver", "loky", "threading", "multiprocessing", "dask")
# The one default, for the library and the CLI alike: workers forked from a server that has the
# analysis imported start in milliseconds (loky's spawned ones take ~0.5 s of a core each). A
# script that calls the analysis must then keep its work under `if __name__ == "__main__":`
# (an unguarded one gets a clear error naming the line); loky needs no such guard.
DEFAULT_BACKEND = "forkserver"


def check_workers(jobs: int, backend: str) -> None:
    """The one check of a worker setting (Workers, AnalysisOptions), without importing joblib."""
    from ..errors import ToolkitError

    if jobs < 1:
        raise ToolkitError(f"jobs must be >= 1, not {jobs}")
    if backend not in BACKENDS:
        raise ToolkitError(f"unknown parallel backend {backend!r} (choose from {', '.join(BACKENDS)})")


def delayed(function: Any) -> Any:
    """``delayed(f)(*args, **kwargs)`` is the task ``(f, args, kwargs)``, as joblib's ``delayed``
    makes it (joblib runs such tuples as they are): building tasks imports no joblib, so a
    one-worker analysis never loads it (about 40 ms of a cold start)."""

    @functools.wraps(function)
    def task(*args: Any, **kwargs: Any) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
        return function, args, kwargs

    return task
