"""Settings shared by every pool of worker processes (import, analysis), and the fork server
that starts analysis workers.

This module stays light (standard library only): the CLI starts the fork server from here
before it imports numpy, polars and pyarrow itself, so that both imports run at once.
"""

from __future__ import annotations

import ast
import functools
import multiprocessing
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.context import BaseContext
from pathlib import Path
from types import FrameType

from ..errors import ToolkitError

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
# toolkit.numerics, so this is a speed setting only).
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
KERNELS_PRELOAD = "toolkit.analysis.warm_kernels"  # numba's kernels, when the analysis will use them


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


def fork_server(*, trusted_main: bool = False, kernels: bool = False) -> BaseContext | None:
    """The multiprocessing context of a fork server that has imported the analysis, started
    now if it is not running; None where there is none (Windows) or it cannot start.

    Why: a spawned worker (joblib's loky) imports numpy, polars, pyarrow and the toolkit
    again, ~0.5 s of a core each, which on 2 cores ate most of what a second worker gains on
    100 runs. A worker forked from this server starts in milliseconds with the scoring code
    loaded.
    The server is a fresh interpreter kept at one thread (SERVER_ENV, and no polars), so
    forking it is safe, unlike forking a process whose thread pools may hold a lock (a test
    holds it to one thread). It lives as long as this process. ``trusted_main``: the caller
    knows the running script is guarded (the CLI), so it is not parsed to check. ``kernels``:
    the caller expects an analysis large enough for the compiled kernels (analysis.kernels), so
    a server started now loads them too (KERNELS_PRELOAD); a server already running is kept.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return None
    global _main_checked
    line = None if (_main_checked or trusted_main) else _unguarded_script_line()
    if line is not None or getattr(multiprocessing.process.current_process(), "_inheriting", False):
        # The server and its workers import the calling script: one that starts its analysis
        # when imported would start it again there, and again in their helpers, without end.
        where = f" (line {line} of {sys.modules['__main__'].__file__})" if line is not None else ""
        raise ToolkitError(f"the forkserver backend imports the calling script in its helper processes, and this "
                           f"script starts its analysis when imported{where}: put that under "
                           "`if __name__ == \"__main__\":`, or use the loky backend")
    _main_checked = True  # once: the server imports this same script whenever it (re)starts
    from multiprocessing import forkserver

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([*ANALYSIS_PRELOAD, *([KERNELS_PRELOAD] if kernels else [])])  # read at start
    try:
        with worker_environment(SERVER_ENV, override=True):
            forkserver.ensure_running()  # returns at once when it runs already
    except OSError:
        return None
    return context


_main_checked = False  # the calling script was found safe to import (or vouched for by the CLI)


def _unguarded_script_line() -> int | None:
    """The line of the running script's top-level code that led here, when it is not under
    ``if __name__ == "__main__":`` (None when guarded, or when no script file runs: -c, a
    notebook, an interactive session)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or not path:
        return None
    frame: FrameType | None = sys._getframe()
    top = None
    while frame is not None:
        if frame.f_globals is vars(main) and frame.f_code.co_name == "<module>":
            top = frame
        frame = frame.f_back
    if top is None:
        return None
    inside = any(lo <= top.f_lineno <= hi for lo, hi in _main_guards(path))
    return None if inside else top.f_lineno


@functools.lru_cache(maxsize=8)
def _main_guards(path: str) -> tuple[tuple[int, int], ...]:
    """Line ranges of a script's top-level ``if __name__ == "__main__":`` blocks (parsed once:
    about 20 ms for the CLI's own file); a file that does not parse counts as all guarded."""
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return ((1, 1 << 30),)
    return tuple((node.lineno, node.end_lineno or node.lineno) for node in tree.body
                 if isinstance(node, ast.If) and _is_main_test(node.test))


def _is_main_test(test: ast.expr) -> bool:
    """``__name__ == "__main__"`` (either way round)."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    return any(isinstance(x, ast.Name) and x.id == "__name__" for x in sides) and \
        any(isinstance(x, ast.Constant) and x.value == "__main__" for x in sides)
