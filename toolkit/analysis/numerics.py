"""Floating-point building blocks whose results do not depend on the machine.

A number this toolkit prints must come out bit for bit the same on every computer: any
SIMD width, any BLAS build or kernel, any thread or worker count, x86-64 or arm64. Three
things break that in ordinary numpy code, and this module replaces each:

* **BLAS products** sum in a kernel-dependent order (and with FMA or not). ``exact_products``
  feeds BLAS integer-valued operands only: every partial sum is an integer below 2**53, so
  it is exact in any order and the kernel cannot matter.
* **numpy's exp/log** have SIMD implementations (AVX-512, NEON) that differ from the scalar
  ones in the last bit. ``exp`` here uses only +, -, *, / and exact power-of-two scaling,
  each correctly rounded by IEEE 754 on every machine, plus a table built once in decimal
  arithmetic.
* **einsum** uses FMA where the baseline instruction set has it (arm64) and not elsewhere.
  ``group_means`` sums with ufunc reductions, whose (pairwise) order is fixed by numpy's
  source, not by the CPU.

Everything else in the analysis is elementwise IEEE arithmetic, sqrt, or ufunc reductions,
which are already portable.
"""

from __future__ import annotations

import math

import numpy as np

SINGLE_MIN_BITS = 16  # float32 BLAS only while every operand keeps at least this many bits


def exact_products(W: np.ndarray, X: np.ndarray, *, allow_single: bool = False) -> np.ndarray:
    """``W @ X`` for integer-valued ``W`` (bootstrap multiplicities), reproducible everywhere.

    Each column of ``X`` is rounded to a fixed-point grid 2**-k_j, with k_j as large as keeps
    every partial sum of the product an integer of magnitude below 2**24 (float32) or 2**53
    (float64). The BLAS product of integer operands is then exact whatever the kernel's
    summation order or use of FMA, and the result is scaled back exactly. float32 is used
    only with ``allow_single``, and only while the grid keeps SINGLE_MIN_BITS bits of every
    column (W's rows sum to at most 2**(24 - SINGLE_MIN_BITS), i.e. up to 256 personas): it
    halves the cost, its rounding of X (~2**-17 of a column's largest value) is far below any
    bootstrap's Monte-Carlo error, and the product comes back as float32 (exact values; the
    caller continues in float32). Otherwise float64 keeps ~2**-44.
    """
    W = np.asarray(W, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    if W.size == 0 or X.size == 0:
        return W @ X
    row_bound = float(np.abs(W).sum(axis=1).max())
    col_max = np.abs(X).max(axis=0)
    if not (np.isfinite(row_bound) and np.isfinite(col_max).all()):
        raise ValueError("non-finite values in a bootstrap product")
    single = allow_single and row_bound <= 2.0 ** (24 - SINGLE_MIN_BITS)
    limit_bits = 24 if single else 53
    _, e = np.frexp(row_bound * col_max)  # exact: the bound is below 2**e
    k = np.minimum(limit_bits - 2 - e, 1000).astype(np.int64)  # one spare bit for rint and rounding
    scale = np.ldexp(np.ones_like(col_max), k)
    Xq = np.rint(X * scale)
    if single:
        out = W.astype(np.float32) @ Xq.astype(np.float32)
    else:
        out = W @ Xq
    out *= np.ldexp(np.ones_like(col_max), -k).astype(out.dtype)  # a power of two: exact
    return out


def _exp_constants(bits: int = 6) -> tuple[np.ndarray, float, float, float]:
    """2**(j/64) for j < 64 and ln2/64 split in two, computed once in decimal arithmetic (pure
    software, so identical everywhere) and rounded to the nearest double."""
    from decimal import Decimal, localcontext

    size = 1 << bits
    with localcontext() as ctx:
        ctx.prec = 60
        ln2 = Decimal(2).ln()
        table = np.array([float(Decimal(2) ** (Decimal(j) / size)) for j in range(size)])
        step = ln2 / size
        hi = float((step * 2**42).to_integral_value()) / 2.0**42  # 36 bits: n * hi is exact for |n| < 2**17
        lo = float(step - Decimal(hi))
        inv = float(size / ln2)
    return table, hi, lo, inv


_EXP_TABLE, _STEP_HI, _STEP_LO, _INV_STEP = _exp_constants()
_EXP_COEFFS = (1.0 / 120, 1.0 / 24, 1.0 / 6, 0.5, 1.0, 1.0)  # Taylor: |r| <= ln2/128 leaves < 2**-54


def exp(x: np.ndarray) -> np.ndarray:
    """exp(x) for x <= 0 within 2 ulp, identical on every machine (basic IEEE operations).

    x = (64 m + j) ln2/64 + r with |r| <= ln2/128, so exp(x) = 2**m * 2**(j/64) * e**r: a
    table of 64 correctly rounded values, a degree-5 polynomial in Horner form, and an
    exact scaling by 2**m. Underflow gives 0. The analysis only exponentiates shifted
    log-probabilities (<= 0); positive inputs are refused rather than risk overflow.
    """
    x = np.maximum(np.asarray(x, dtype=np.float64), -746.0)  # also a copy we may overwrite
    if x.size and x.max() > 0.0:
        raise ValueError("numerics.exp is for non-positive arguments")
    if x.size <= _EXP_BLOCK:
        return _exp_block(x)
    flat = x.reshape(-1)
    for lo in range(0, flat.size, _EXP_BLOCK):  # blocks that stay in cache: ~3x faster than whole-array passes
        flat[lo : lo + _EXP_BLOCK] = _exp_block(flat[lo : lo + _EXP_BLOCK])
    return x


_EXP_BLOCK = 1 << 14


def _exp_block(x: np.ndarray) -> np.ndarray:
    """The body of ``exp`` on a block it may overwrite (already clipped and checked)."""
    n = x * _INV_STEP
    np.rint(n, out=n)
    t = n * _STEP_HI
    x -= t
    np.multiply(n, _STEP_LO, out=t)
    x -= t  # x is now r
    ni = n.astype(np.int32)  # |n| < 2**17
    p = np.multiply(x, _EXP_COEFFS[0], out=t)
    p += _EXP_COEFFS[1]
    for c in _EXP_COEFFS[2:]:
        p *= x
        p += c
    p *= np.take(_EXP_TABLE, ni & 63)
    np.right_shift(ni, 6, out=ni)
    return np.ldexp(p, ni, out=p)


def group_means(x: np.ndarray, item_groups: np.ndarray, n_groups: int, axis: int = -1, *,
                presorted: bool = False) -> np.ndarray:
    """Mean over the item axis for all items (index 0) and for each group (1..G), in place
    of that axis.

    ``item_groups[q]`` is the group index of item q; with ``presorted`` the items of ``x``
    are already in group order (stable sort of ``item_groups``), which saves a copy. Group
    sums are one ``reduceat`` and the overall sum adds the group sums in group order: ufunc
    reductions whose order is fixed by numpy's source and the shapes, never by the CPU.
    """
    item_groups = np.asarray(item_groups)
    axis = axis % x.ndim
    sizes = np.bincount(item_groups, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    if not presorted:
        x = np.take(x, np.argsort(item_groups, kind="stable"), axis=axis)
    sums = np.add.reduceat(x, starts, axis=axis)
    shape = [1] * x.ndim
    shape[axis] = n_groups
    overall = np.add.reduce(sums, axis=axis, keepdims=True) / x.shape[axis]
    return np.concatenate([overall, sums / sizes.reshape(shape)], axis=axis)


def fmean(values) -> float:
    """Correctly rounded mean of a few numbers (math.fsum): the same on any machine and in
    any order, unlike a SIMD-blocked data-frame aggregation."""
    vals = [float(v) for v in values]
    return math.fsum(vals) / len(vals) if vals else float("nan")


def fstd(values) -> float:
    """Sample (ddof=1) standard deviation with correctly rounded sums."""
    vals = [float(v) for v in values]
    if len(vals) < 2:
        return float("nan")
    m = fmean(vals)
    return math.sqrt(math.fsum((v - m) ** 2 for v in vals) / (len(vals) - 1))
