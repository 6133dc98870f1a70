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

import functools
import math
from collections.abc import Iterable
from decimal import Decimal

import numpy as np
from numpy.typing import ArrayLike

SINGLE_MIN_BITS = 16  # float32 BLAS only while every operand keeps at least this many bits


def exact_products(W: np.ndarray, X: np.ndarray, *, allow_single: bool = False,
                   row_bound: float | None = None) -> np.ndarray:
    """``W @ X`` for integer-valued ``W`` (bootstrap multiplicities), reproducible everywhere.

    Each column of ``X`` is rounded to a fixed-point grid 2**-k_j, with k_j as large as keeps
    every partial sum of the product an integer of magnitude below 2**24 (float32) or 2**53
    (float64). The BLAS product of integer operands is then exact whatever the kernel's
    summation order or use of FMA, and the result is scaled back exactly. float32 is used
    only with ``allow_single``, and only while the grid keeps SINGLE_MIN_BITS bits of every
    column (W's rows sum to at most 2**(24 - SINGLE_MIN_BITS), i.e. up to 256 personas): it
    halves the cost, its rounding of X (~2**-17 of a column's largest value) is far below any
    bootstrap's Monte-Carlo error, and the product comes back as float32 (exact values; the
    caller continues in float32). Otherwise float64 keeps ~2**-44. ``row_bound``: the largest
    row sum of ``|W|`` when the caller knows it (bootstrap multiplicities of P personas: P),
    saving a pass over ``W``.
    """
    W = np.asarray(W, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    if W.size == 0 or X.size == 0:
        return np.asarray(W @ X)
    row_bound = float(np.abs(W).sum(axis=1).max()) if row_bound is None else float(row_bound)
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
    return np.asarray(out)


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
    exact scaling by 2**m. Underflow gives 0, and NaN gives NaN. The analysis only exponentiates
    shifted log-probabilities (<= 0); positive inputs are refused rather than risk overflow.
    """
    x = np.maximum(np.asarray(x, dtype=np.float64), -746.0)  # also a copy we may overwrite (NaN stays)
    if x.size and (x > 0.0).any():  # not x.max(): a NaN would hide a positive value
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
    with np.errstate(invalid="ignore"):  # a NaN's index is garbage; its NaN carries through to the result
        ni = n.astype(np.int32)  # |n| < 2**17
    p = np.multiply(x, _EXP_COEFFS[0], out=t)
    p += _EXP_COEFFS[1]
    for c in _EXP_COEFFS[2:]:
        p *= x
        p += c
    p *= np.take(_EXP_TABLE, ni & 63)
    np.right_shift(ni, 6, out=ni)
    return np.asarray(np.ldexp(p, ni, out=p))


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
    if not presorted and not (item_groups[1:] >= item_groups[:-1]).all():  # in group order already: no copy
        x = np.take(x, np.argsort(item_groups, kind="stable"), axis=axis)
    sums = np.add.reduceat(x, starts, axis=axis)
    shape = [1] * x.ndim
    shape[axis] = n_groups
    overall = np.add.reduce(sums, axis=axis, keepdims=True) / x.shape[axis]
    return np.concatenate([overall, sums / sizes.reshape(shape)], axis=axis)


def fmean(values: Iterable[float] | np.ndarray) -> float:
    """Correctly rounded mean of a few numbers (math.fsum): the same on any machine and in
    any order, unlike a SIMD-blocked data-frame aggregation."""
    vals = [float(v) for v in values]
    return math.fsum(vals) / len(vals) if vals else float("nan")


def fstd(values: Iterable[float] | np.ndarray) -> float:
    """Sample (ddof=1) standard deviation with correctly rounded sums."""
    vals = [float(v) for v in values]
    if len(vals) < 2:
        return float("nan")
    m = fmean(vals)
    return math.sqrt(math.fsum((v - m) ** 2 for v in vals) / (len(vals) - 1))


# --- The normal distribution and logarithms, correctly rounded in decimal arithmetic -------
#
# scipy's ndtr/ndtri (cephes) and Python's math.exp/log call the system's libm, which differs by
# library and version (glibc 2.35 replaced hypot, 2.28 exp/log; macOS and musl have their own)
# and, in glibc, by CPU (FMA variants chosen at run time). The few normal-distribution values an
# interval or a power table needs are computed here in the decimal module instead (libmpdec:
# integer arithmetic, identical everywhere) to far more digits than a double holds, then rounded
# once to the nearest double. They cost about 0.1 ms each, so they serve small arrays only.

_PREC = 36  # decimal digits carried: 19 beyond a double's 17, so a misrounding needs a 1e-19 tie


@functools.cache
def _pi() -> Decimal:
    """pi to 70 digits by Machin's formula (computed once)."""
    from decimal import Decimal, localcontext

    with localcontext() as ctx:
        ctx.prec = 70

        def arctan_inv(n: int) -> Decimal:
            x, n2, total, k, sign = Decimal(1) / n, n * n, Decimal(0), 1, 1
            while x > Decimal(10) ** -75:
                total += sign * x / k
                x /= n2
                k, sign = k + 2, -sign
            return total

        return +(4 * (4 * arctan_inv(5) - arctan_inv(239)))


def _density(x: Decimal) -> Decimal:
    """phi(x) in the current decimal context."""
    return (-x * x / 2).exp() / (2 * _pi()).sqrt()


def _cdf_decimal(x: Decimal) -> Decimal:
    """Phi(x) in the current decimal context: Marsaglia's series
    Phi(x) = 1/2 + phi(x) * sum_k x**(2k+1) / (1*3*...*(2k+1)) for |x| <= 5 (every term of one
    sign; the lower tail loses at most 6 digits to the cancellation against 1/2), and Laplace's
    continued fraction 1 - Phi(|x|) = phi(x) / (|x| + 1/(|x| + 2/(|x| + ...))) beyond (Lentz's
    method), which loses nothing."""
    from decimal import Decimal, getcontext

    tiny = Decimal(10) ** -(getcontext().prec + 2)
    if abs(x) <= 5:
        x2 = x * x
        term = total = x
        k = 1
        while abs(term) > abs(total) * tiny:
            term = term * x2 / (2 * k + 1)
            total += term
            k += 1
        return Decimal("0.5") + _density(x) * total
    a = abs(x)
    f = c = a
    d = Decimal(0)
    k = 1
    while True:
        d = 1 / (a + k * d)
        c = a + k / c
        delta = c * d
        f *= delta
        k += 1
        if abs(delta - 1) <= tiny:
            break
    tail = _density(a) / f
    return tail if x < 0 else 1 - tail


def normal_cdf_scalar(x: float) -> float:
    """The standard normal CDF, correctly rounded (bar a tie beyond 36 digits)."""
    from decimal import Decimal, localcontext

    if math.isnan(x):
        return math.nan
    if x < -38.5:  # below the smallest subnormal
        return 0.0
    if x > 8.3:  # 1 - Phi(x) < 2**-54: rounds to 1
        return 1.0
    with localcontext() as ctx:
        ctx.prec = _PREC + 6
        return float(_cdf_decimal(Decimal(x)))


def normal_quantile_scalar(p: float) -> float:
    """The standard normal quantile Phi^-1(p), correctly rounded (bar a tie beyond 36 digits):
    Newton's method in decimal from a rough start, to convergence, then one rounding."""
    from decimal import Decimal, localcontext

    if math.isnan(p) or p < 0.0 or p > 1.0:
        return math.nan
    if p == 0.0:
        return -math.inf
    if p == 1.0:
        return math.inf
    if p == 0.5:
        return 0.0
    lower = p < 0.5
    with localcontext() as ctx:
        ctx.prec = _PREC + 6
        q = Decimal(p) if lower else Decimal(1) - Decimal(p)  # exact: p has at most 53 significant bits
        # Abramowitz & Stegun 26.2.23 as the start (error < 5e-4), then Newton on Phi(x) = q, x < 0.
        t = (-2 * q.ln()).sqrt()
        x = -(t - (Decimal("2.515517") + Decimal("0.802853") * t + Decimal("0.010328") * t * t)
              / (1 + Decimal("1.432788") * t + Decimal("0.189269") * t * t + Decimal("0.001308") * t * t * t))
        limit = Decimal(10) ** -(_PREC + 2)
        for _ in range(60):
            step = (_cdf_decimal(x) - q) / _density(x)
            x -= step
            if abs(step) <= abs(x) * limit:
                break
        value = float(x)
    return value if lower else -value


def normal_cdf(x: ArrayLike) -> np.ndarray:
    """``normal_cdf_scalar`` over an array (for the few values an interval or a table needs)."""
    arr = np.asarray(x, dtype=np.float64)
    return np.array([_cached_cdf(v) for v in arr.ravel().tolist()], dtype=np.float64).reshape(arr.shape)


def normal_quantile(p: ArrayLike) -> np.ndarray:
    """``normal_quantile_scalar`` over an array."""
    arr = np.asarray(p, dtype=np.float64)
    return np.array([_cached_quantile(v) for v in arr.ravel().tolist()], dtype=np.float64).reshape(arr.shape)


_cached_cdf = functools.lru_cache(maxsize=65536)(normal_cdf_scalar)
_cached_quantile = functools.lru_cache(maxsize=65536)(normal_quantile_scalar)


def log_sum_exp(values: list[float]) -> float:
    """log(sum(exp(v))) of a few log-probabilities, correctly rounded; one value is returned as
    it is (no round trip through exp and log)."""
    from decimal import Decimal, localcontext

    if len(values) == 1:
        return float(values[0])
    with localcontext() as ctx:
        ctx.prec = _PREC
        return float(sum((Decimal(v).exp() for v in values), Decimal(0)).ln())


def log_ratio(numerator: float, denominator: float) -> float:
    """log(numerator / denominator) for positive numbers, correctly rounded."""
    from decimal import Decimal, localcontext

    with localcontext() as ctx:
        ctx.prec = _PREC
        return float((Decimal(numerator) / Decimal(denominator)).ln())


def decimal_exponent(value: float) -> int:
    """floor(log10(|value|)) exactly, for a finite non-zero value (math.log10 rounds first and
    can be off by one just below a power of ten)."""
    from decimal import Decimal

    return Decimal(abs(value)).adjusted()


@functools.cache
def c4(n: int) -> float:
    """E[s] / sigma for the ddof=1 sample SD s of n normal values: sqrt(2/(n-1)) *
    Gamma(n/2) / Gamma((n-1)/2), correctly rounded. For whole n the gamma ratio is a ratio of
    factorials times sqrt(pi) or its inverse, computed here in decimal arithmetic (libmpdec) to
    50 digits and rounded once: the same bits on every machine."""
    from decimal import Decimal, localcontext
    from math import factorial

    if n < 2:
        raise ValueError(f"c4 needs n >= 2, not {n}")
    with localcontext() as ctx:
        ctx.prec = 50
        root_pi = _pi().sqrt()
        m = n // 2
        if n % 2 == 0:  # Gamma(m) / Gamma(m - 1/2), Gamma(k + 1/2) = (2k)! sqrt(pi) / (4**k k!)
            k = m - 1
            ratio = Decimal(factorial(k) * 4**k * factorial(k)) / (Decimal(factorial(2 * k)) * root_pi)
        else:  # Gamma(m + 1/2) / Gamma(m)
            ratio = Decimal(factorial(2 * m)) * root_pi / Decimal(4**m * factorial(m) * factorial(m - 1))
        return float((Decimal(2) / (n - 1)).sqrt() * ratio)
