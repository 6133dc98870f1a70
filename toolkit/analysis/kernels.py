"""Compiled inner loops, used when numba is installed (the ``fast`` extra) and the work is large.

The rerun bootstrap spends most of its time in numpy passes over its draws: a gather of each
draw's alias bound, a comparison, a gather of the outcome's five statistics, then sums over an
item's cells. numpy makes each a separate pass through memory and a Python call per block and
per item. ``rerun_block_sums`` does the same per draw in one compiled loop: the same table
entries are read and the same IEEE additions happen in the same order (a segment's first cell,
then each next cell, then the segment's total added to the item's running sum), so every bit
is the same as numpy's (tests/test_kernels.py compares them). No floating-point multiplication
happens in the loop, so no fused multiply-add can change a rounding, whatever the CPU.

Importing numba and loading the machine code cost about 0.42 s a process (numba imports
scipy.linalg) and the kernels save about 5.5 ms a run (100 runs in one process: 3.3 -> 3.0 s),
so they are used only by a process that analyses at least ``MIN_RUNS`` runs (``worth``); a
command on fewer runs never imports numba. numba caches the machine code on disk (next to
this file, or in its user cache where that is read-only).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

MIN_RUNS = 128  # loading numba costs ~0.42 s a process, the kernels save ~5.5 ms a run: even at ~80

_wanted = False
_kernels: tuple[Callable[..., None], Callable[[np.ndarray, int], np.ndarray]] | None = None
_tried = False


def worth(runs: int) -> bool:
    """Whether a process that analyses this many runs should use the kernel: from MIN_RUNS on."""
    return runs >= MIN_RUNS


def set_enabled(on: bool) -> None:
    """Use the kernel in this process (when numba is installed), or not."""
    global _wanted
    _wanted = on


def rerun_block_sums() -> Callable[..., None] | None:
    """The compiled block sum, or None: not wanted in this process, or numba is not installed."""
    compiled = _compiled()
    return None if compiled is None else compiled[0]


def multiplicities() -> Callable[[np.ndarray, int], np.ndarray] | None:
    """The compiled count of each row's draws (``_multiplicities``), or None, as above."""
    compiled = _compiled()
    return None if compiled is None else compiled[1]


def _compiled() -> tuple[Callable[..., None], Callable[[np.ndarray, int], np.ndarray]] | None:
    global _kernels, _tried
    if not _wanted:
        return None
    if not _tried:
        _tried = True
        _kernels = _compile()
    return _kernels


def warm() -> None:
    """Load both kernels (numba's import, its machine code from the disk cache, a first call),
    leaving them off: a process forked from this one has them ready."""
    set_enabled(True)
    _compiled()
    set_enabled(False)


def available() -> bool:
    """Whether numba can be imported here (the ``fast`` extra)."""
    import importlib.util

    return importlib.util.find_spec("numba") is not None


def _compile() -> tuple[Callable[..., None], Callable[[np.ndarray, int], np.ndarray]] | None:
    """The compiled kernels after a first call on a few numbers, or None where numba is absent
    or cannot compile them (another version's typing rules, say): numpy then does the same
    sums, to the same bits, only slower."""
    try:
        import numba
    except ImportError:
        return None
    try:
        try:  # numba caches the machine code on disk, where it finds a writable place
            jit: Any = numba.njit(cache=True, nogil=True, boundscheck=False)
            block, count = jit(_block_sums), jit(_multiplicities)
        except RuntimeError:  # no writable cache location: compile in memory, each process
            jit = numba.njit(nogil=True, boundscheck=False)
            block, count = jit(_block_sums), jit(_multiplicities)
        words = np.zeros((1, 3), dtype=np.uint64)
        acc = np.zeros((1, 3, 5))
        block(words, words, np.zeros(1, dtype=np.uint64), np.ones(1, dtype=np.uint64), np.ones((2, 5)),
              np.zeros(1, dtype=np.int64), acc)
        if not (count(np.zeros((1, 2), dtype=np.int64), 2) == [[2.0, 0.0]]).all() or not (acc == 1.0).all():
            return None
    except Exception:  # compilation failed: fall back to numpy (the same numbers)
        return None
    return block, count


def _multiplicities(idx: np.ndarray, P: int) -> np.ndarray:  # pragma: no cover - runs compiled
    """W[b, p] = how often p occurs in row b of ``idx`` (draws x P, values in [0, P)), as
    float64: metrics.resample_weights' bincount, without its (draws x P) offset array. Counts
    are small integers, exact in any order."""
    draws, width = idx.shape
    W = np.zeros((draws, P))
    for b in range(draws):
        for j in range(width):
            W[b, idx[b, j]] += 1.0
    return W


def _block_sums(words: np.ndarray, buckets: np.ndarray, base: np.ndarray, bound: np.ndarray, stats: np.ndarray,
                items: np.ndarray, acc: np.ndarray) -> None:  # pragma: no cover - runs compiled
    """Add the resampled statistics of one block of cells to ``acc`` (Q, draws, 5), in place.

    ``words`` (cells, draws) are the uniform words of ExactCells.words and ``buckets`` their
    quotients by the bucket width (numpy's division by a constant is faster than the CPU's).
    Row ``2 * (bucket + base) + (word >= bound)`` of ``stats`` is the drawn outcome's. Cells of
    one item are contiguous in ``items``; each item's cells are summed in order, starting from
    the first cell's values, and the sum is added to ``acc``: numpy's ``acc[q] +=
    np.add.reduce(vals[s:e], axis=0)``. A cell's draws are read in the order they lie in memory,
    into one (draws, 5) buffer that stays in the first-level cache.
    """
    cells, draws = words.shape
    part = np.empty((draws, 5))
    s = 0
    while s < cells:
        q = items[s]
        e = s + 1
        while e < cells and items[e] == q:
            e += 1
        for c in range(s, e):
            first = c == s
            offset = base[c]
            for d in range(draws):
                at = np.int64(buckets[c, d] + offset)
                row = 2 * at + (1 if words[c, d] >= bound[at] else 0)
                for k in range(5):
                    if first:
                        part[d, k] = stats[row, k]
                    else:
                        part[d, k] += stats[row, k]
        for d in range(draws):
            for k in range(5):
                acc[q, d, k] += part[d, k]
        s = e
