"""Confidence intervals from bootstrap replicates, and multiplicity adjustment.

Only elementwise IEEE arithmetic, sqrt, sorting and the correctly rounded normal functions of
``numerics`` are used (no ``**`` but squares, no libm or SIMD transcendental), so an interval is
the same bits on every machine.
"""

from __future__ import annotations

import numpy as np


def percentile_interval(replicates: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The (1-level)/2 and (1+level)/2 quantiles of the replicates (axis 0)."""
    alpha = (1.0 - level) / 2.0
    return _quantiles(replicates, np.full(replicates.shape[1:], alpha), np.full(replicates.shape[1:], 1.0 - alpha))


def acceleration(*jackknives: np.ndarray) -> np.ndarray:
    """BCa acceleration from leave-one-out values (axis 0), one array per independent sample.

    With U_ki = (n_k - 1)(mean_k - theta_(k,i)), a = sum (U/n)^3 / (6 (sum (U/n)^2)^1.5), summed
    over every unit of every sample (Efron & Tibshirani 1993, eq. 14.15 and its multi-sample
    form). One sample gives the familiar sum d^3 / (6 (sum d^2)^1.5), d = mean - theta_(i).
    """
    num = den = 0.0
    for jk in jackknives:
        n = jk.shape[0]
        u = (n - 1) * (jk.mean(axis=0) - jk) / n
        u2 = u * u
        num = num + (u2 * u).sum(axis=0)
        den = den + u2.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        a = num / (6.0 * (den * np.sqrt(den)))  # den^(3/2) as den * sqrt(den): sqrt is correctly rounded everywhere
    return np.where(np.isfinite(a), a, 0.0)


def bca_interval(replicates: np.ndarray, estimate: np.ndarray, accel: np.ndarray,
                 level: float) -> tuple[np.ndarray, np.ndarray]:
    """Bias-corrected and accelerated interval (Efron 1987) for each column of ``replicates``.

    z0 = Phi^-1(share of replicates below the estimate, ties counted half); the percentile
    levels Phi(z0 + (z0 + z) / (1 - a (z0 + z))) for z = Phi^-1((1 -+ level)/2). When every
    replicate lies on one side (z0 infinite) the interval is the percentile one's end points.
    """
    from ..numerics import normal_cdf as ndtr
    from ..numerics import normal_quantile as ndtri

    B = replicates.shape[0]
    below = (replicates < estimate).sum(axis=0) + 0.5 * (replicates == estimate).sum(axis=0)
    share = np.clip(below / B, 0.5 / B, 1.0 - 0.5 / B)
    z0 = ndtri(share)
    z = ndtri(np.array([(1.0 - level) / 2.0, (1.0 + level) / 2.0]))
    levels = []
    for zk in z:
        t = z0 + zk
        levels.append(ndtr(z0 + t / (1.0 - accel * t)))
    return _quantiles(replicates, levels[0], levels[1])


def _quantiles(replicates: np.ndarray, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column quantiles at per-column levels (linear interpolation between order statistics)."""
    ordered = np.sort(replicates, axis=0)
    B = ordered.shape[0]
    flat = ordered.reshape(B, -1)

    def at(level: np.ndarray) -> np.ndarray:
        pos = np.clip(np.asarray(level, dtype=np.float64).ravel(), 0.0, 1.0) * (B - 1)
        lo = np.floor(pos).astype(np.intp)
        hi = np.minimum(lo + 1, B - 1)
        cols = np.arange(flat.shape[1])
        frac = pos - lo
        a, b = flat[lo, cols], flat[hi, cols]
        return np.asarray((a + frac * (b - a)).reshape(replicates.shape[1:]))

    return at(low), at(high)


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN entries are left out)."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out


def t_quantile(p: float, df: int) -> float:
    """Student's t quantile from the normal one by the Cornish-Fisher series (Abramowitz &
    Stegun 26.7.5, terms to df**-4): relative error below 1e-3 from df = 5, 5e-5 from 9 and
    1e-6 from 20 (p up to 0.995); only IEEE arithmetic on the correctly rounded normal
    quantile, so the same bits everywhere."""
    from ..numerics import normal_quantile_scalar

    z = normal_quantile_scalar(p)
    z2 = z * z
    g1 = (z2 + 1.0) * z / 4.0
    g2 = ((5.0 * z2 + 16.0) * z2 + 3.0) * z / 96.0
    g3 = (((3.0 * z2 + 19.0) * z2 + 17.0) * z2 - 15.0) * z / 384.0
    g4 = ((((79.0 * z2 + 776.0) * z2 + 1482.0) * z2 - 1920.0) * z2 - 945.0) * z / 92160.0
    v = float(df)
    return float(z + g1 / v + g2 / (v * v) + g3 / (v * v * v) + g4 / (v * v * v * v))


def expansion(units: int, level: float) -> float:
    """How much wider a bootstrap interval from ``units`` resampled units must be to behave like
    a t interval (Hesterberg 2015, the "expanded percentile" interval): the bootstrap's spread
    uses 1/n where the unbiased variance uses 1/(n-1), and its normal-like quantiles ignore that
    the spread itself is estimated. sqrt(n/(n-1)) * t_{n-1} / z; 1 for no units to speak of."""
    from ..numerics import normal_quantile_scalar

    if units < 3:
        return 1.0
    p = (1.0 + level) / 2.0
    return float(np.sqrt(units / (units - 1.0)) * t_quantile(p, units - 1) / normal_quantile_scalar(p))


def jackknife_se(*jackknives: np.ndarray) -> np.ndarray:
    """Jackknife SE from leave-one-out values (axis 0), one array per independent sample:
    sqrt(sum_k (n_k - 1)/n_k sum_i (theta_(k,i) - mean_k)^2). For a smooth statistic its
    variance is biased upward (the Efron-Stein inequality), so it bounds the bootstrap's
    too-small spread of a spread-type statistic from the safe side."""
    total = 0.0
    for jk in jackknives:
        n = jk.shape[0]
        d = jk - jk.mean(axis=0)
        total = total + (n - 1) / n * (d * d).sum(axis=0)
    return np.asarray(np.sqrt(total))


def widening(replicates: np.ndarray, estimate: np.ndarray, jackknives: list[np.ndarray], units: int,
             level: float) -> np.ndarray:
    """How much to widen bootstrap replicates (axis 1 of (M, B, G)) about the estimate, per
    metric and group, (M, 1, G): the t-like expansion for ``units`` resampled units, times
    max(1, jackknife SE / bootstrap SE). The second factor is what brings S and S_corrected
    to nominal coverage: the persona bootstrap understates the spread of a spread (their
    intervals covered 90-93% where sigma_bar's covered 95%; benchmarks/bench_coverage.py),
    while the jackknife's conservative variance does not; where the two agree (sigma_bar, R)
    it changes nothing."""
    if replicates.shape[1] < 2:
        return np.full((replicates.shape[0], 1, replicates.shape[2]), expansion(units, level))
    boot = np.std(replicates, axis=1, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = jackknife_se(*jackknives) / boot
    ratio = np.where(np.isfinite(ratio), np.maximum(ratio, 1.0), 1.0)
    return np.asarray(expansion(units, level) * ratio[:, None, :])


def expanded(replicates: np.ndarray, estimate: np.ndarray, factor: float | np.ndarray) -> np.ndarray:
    """Replicates moved away from the estimate by ``factor``: every quantile of them moves the
    same way, and the share below the estimate (BCa's bias correction) is unchanged."""
    return np.asarray(estimate + factor * (replicates - estimate))
