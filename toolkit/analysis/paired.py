"""The difference between two runs, with an interval and a test: did a fine-tune change the model?

Paired (both runs answered by the same personas): persona p's answers in run A and in run B
are one unit. The bootstrap draws personas with replacement *once per draw for both runs*,
so what persona p contributes to A and to B moves together and their correlation is kept;
each drawn persona brings its own repeated answers, so each run's repetition noise is in the
replicates too (docs/statistics.md explains why a second, rerun stage is not added on top:
it would count that noise twice). The permutation test swaps, persona by persona and with
probability 1/2, which run an answer set belongs to: under "no change" every swap is as
likely as the data, so the p-value is exact up to Monte-Carlo error.

Unpaired (different persona sets): each run is resampled on its own, and the test permutes
persona labels between the pooled runs.

Every statistic is a function of per-item sums over personas of (mu - c), (mu - c)^2, sigma
and sigma^2/n (and, for the corrected companions, sigma / c4(n) and whether a cell has two
answers), so bootstrap draws, jackknife leave-one-outs and permutations are all matrix
products with integer weights (numerics.exact_products: the same bits on any machine).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..numerics import exact_products
from .intervals import acceleration, bca_interval, expanded, percentile_interval, widening
from .metrics import (
    ItemGroups,
    cell_moments,
    corrected_sigma_bar,
    from_sums,
    inverse_c4,
    persona_values,
    point_estimates,
    repetition_noise,
    resample_weights,
)
from .options import AnalysisOptions

METRICS = ("S", "sigma_bar", "R", "S_corrected")
CORRECTED = ("sigma_bar_corrected", "R_corrected")  # compared on request (`compare --corrected`)
TIE = 1e-12  # relative slack when counting permutation statistics "at least as extreme"


@dataclass
class PairResult:
    """Everything about one comparison, per metric (axis 0: METRICS, then CORRECTED when asked
    for) and group (axis 1)."""

    baseline: np.ndarray  # (4, G) baseline run's values on the compared personas
    estimate: np.ndarray  # (4, G) other run's values
    delta_se: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    pct_se: np.ndarray
    pct_low: np.ndarray
    pct_high: np.ndarray
    p_value: np.ndarray
    paired: bool
    personas: tuple[int, int]

    @property
    def metrics(self) -> tuple[str, ...]:
        return METRICS + CORRECTED if self.baseline.shape[0] > len(METRICS) else METRICS

    @property
    def delta(self) -> np.ndarray:
        return np.asarray(self.estimate - self.baseline)

    @property
    def delta_pct(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(100.0 * self.delta / self.baseline)


def unit_values(counts: np.ndarray, scale: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Per persona, the four per-item quantities the metrics sum (metrics.persona_values): (P, 4Q)."""
    n, mu, sigma = cell_moments(counts, scale)
    return persona_values(mu, sigma, repetition_noise(n, sigma), centre)


def _units(moments: tuple[np.ndarray, np.ndarray, np.ndarray], centre: np.ndarray, corrected: bool) -> np.ndarray:
    """(P, 4Q) persona values, or (P, 6Q) with the corrected blocks sigma / c4(n) and n >= 2."""
    n, mu, sigma = moments
    X = persona_values(mu, sigma, repetition_noise(n, sigma), centre)
    if not corrected:
        return X
    return np.concatenate([X, sigma * inverse_c4(n), (n >= 2).astype(np.float64)], axis=1)


def metrics_from_sums(sums: np.ndarray, P: int, G: ItemGroups) -> np.ndarray:
    """(4, ..., G) values of METRICS from (..., 4Q) sums over P personas; (6, ..., G) with
    CORRECTED from (..., 6Q) sums (``_units`` with ``corrected``)."""
    Q = len(G.of_items)
    S, sig, S_corr = from_sums(sums[..., : 4 * Q], P, G)
    with np.errstate(divide="ignore"):
        values = [S, sig, 1.0 / sig, S_corr]
        if sums.shape[-1] > 4 * Q:
            sig_c = corrected_sigma_bar(sums[..., 4 * Q : 5 * Q], sums[..., 5 * Q :], G)
            values += [sig_c, 1.0 / sig_c]
        return np.stack(values)


def point_metrics(counts: np.ndarray, scale: np.ndarray, G: ItemGroups) -> np.ndarray:
    """(4, G) METRICS computed exactly as `analyze` computes them."""
    return _metrics_of(cell_moments(counts, scale), G)


def _metrics_of(moments: tuple[np.ndarray, np.ndarray, np.ndarray], G: ItemGroups,
                X: np.ndarray | None = None) -> np.ndarray:
    """The point values as `analyze` computes them; CORRECTED too when ``X`` has their blocks
    (their sums over personas are what `analyze --corrected` divides)."""
    n, mu, sigma = moments
    S, sig, S_corr = point_estimates(mu, sigma, G, repetition_noise(n, sigma))
    with np.errstate(divide="ignore"):
        values = [S, sig, 1.0 / sig, S_corr]
        Q = mu.shape[1]
        if X is not None and X.shape[1] > 4 * Q:
            sums = X.sum(axis=0)
            sig_c = corrected_sigma_bar(sums[4 * Q : 5 * Q], sums[5 * Q :], G)
            values += [sig_c, 1.0 / sig_c]
        return np.stack(values)


def compare_pair(base: np.ndarray, other: np.ndarray, scale: np.ndarray, G: ItemGroups, options: AnalysisOptions,
                 rngs: tuple[np.random.Generator, np.random.Generator], paired: bool,
                 corrected: bool = False) -> PairResult:
    """Compare two count tensors (P, Q, K). ``paired``: the rows are the same personas in order.
    ``rngs``: the bootstrap and the permutation streams. ``corrected``: also CORRECTED, from the
    same draws and permutations (the first four metrics are the same bits either way)."""
    rng_boot, rng_perm = rngs
    ma, mb = cell_moments(base, scale), cell_moments(other, scale)  # (n, mu, sigma) of each run, once
    centre = np.concatenate([ma[1], mb[1]]).mean(axis=0)  # one centre for both: permuted rows mix them
    Xa, Xb = _units(ma, centre, corrected), _units(mb, centre, corrected)
    Pa, Pb = Xa.shape[0], Xb.shape[0]
    est_a, est_b = _metrics_of(ma, G, Xa), _metrics_of(mb, G, Xb)
    B = options.bootstrap
    if paired:
        W = resample_weights(Pa, B, rng_boot)
        boot_a, boot_b = exact_products(W, Xa), exact_products(W, Xb)
    else:
        boot_a = exact_products(resample_weights(Pa, B, rng_boot), Xa)
        boot_b = exact_products(resample_weights(Pb, B, rng_boot), Xb)
    rep_a, rep_b = metrics_from_sums(boot_a, Pa, G), metrics_from_sums(boot_b, Pb, G)
    delta_rep = rep_b - rep_a  # (4, B, G)
    with np.errstate(invalid="ignore", divide="ignore"):
        pct_rep = 100.0 * delta_rep / rep_a
    delta, pct = est_b - est_a, 100.0 * (est_b - est_a) / est_a
    units = min(Pa, Pb)
    jk_delta, jk_pct = _jackknife(Xa, Xb, G, paired, pct=False), _jackknife(Xa, Xb, G, paired, pct=True)
    # widened for the bootstrap's narrowness with few personas and for a spread's spread (intervals.widening)
    wider = widening(delta_rep, delta, jk_delta, units, options.ci_level)
    delta_int = _interval(expanded(delta_rep, delta[:, None], wider), delta, jk_delta, options)
    pct_int = _interval(expanded(pct_rep, pct[:, None], widening(pct_rep, pct, jk_pct, units, options.ci_level)),
                        pct, jk_pct, options)
    p = _permutation_p(Xa, Xb, G, options.permutations, rng_perm, paired)
    return PairResult(est_a, est_b, _se(delta_rep), *delta_int, _se(pct_rep), *pct_int, p, paired, (Pa, Pb))


def _se(replicates: np.ndarray) -> np.ndarray:
    if replicates.shape[1] < 2:
        return np.full((replicates.shape[0], replicates.shape[2]), np.nan)
    return np.asarray(np.std(replicates, axis=1, ddof=1))


def _interval(replicates: np.ndarray, estimate: np.ndarray, jackknives: list[np.ndarray],
              options: AnalysisOptions) -> tuple[np.ndarray, np.ndarray]:
    """Interval per metric and group; replicates (4, B, G) -> moved to (B, 4, G) for the helpers."""
    if replicates.shape[1] < 2:
        nan = np.full(estimate.shape, np.nan)
        return nan, nan
    reps = np.moveaxis(replicates, 1, 0)
    finite = np.isfinite(reps).all(axis=0)
    if options.ci_method == "percentile":
        low, high = percentile_interval(reps, options.ci_level)
    else:
        low, high = bca_interval(reps, estimate, acceleration(*jackknives), options.ci_level)
    return np.where(finite, low, np.nan), np.where(finite, high, np.nan)


def leave_one_out(X: np.ndarray, G: ItemGroups) -> np.ndarray:
    """(P, 4, G) metrics with each persona left out in turn."""
    P = X.shape[0]
    return np.moveaxis(metrics_from_sums(X.sum(axis=0) - X, P - 1, G), 1, 0)


def _jackknife(Xa: np.ndarray, Xb: np.ndarray, G: ItemGroups, paired: bool, pct: bool) -> list[np.ndarray]:
    """Leave-one-out values of the difference (or percent change): one array per independent
    sample (one for a paired comparison: a persona leaves both runs)."""
    def diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(100.0 * (b - a) / a if pct else b - a)

    full_a = metrics_from_sums(Xa.sum(axis=0), Xa.shape[0], G)
    full_b = metrics_from_sums(Xb.sum(axis=0), Xb.shape[0], G)
    if paired:
        return [diff(leave_one_out(Xa, G), leave_one_out(Xb, G))]
    return [diff(leave_one_out(Xa, G), full_b[None]), diff(full_a[None], leave_one_out(Xb, G))]


def _permutation_p(Xa: np.ndarray, Xb: np.ndarray, G: ItemGroups, draws: int, rng: np.random.Generator,
                   paired: bool) -> np.ndarray:
    """Two-sided p-value of every metric's difference, (1 + #{|d*| >= |d|}) / (1 + draws)."""
    Pa, Pb = Xa.shape[0], Xb.shape[0]
    if draws <= 0:
        return np.full((metrics_from_sums(Xa.sum(axis=0), Pa, G).shape[0], G.width), np.nan)
    total_a, total_b = Xa.sum(axis=0), Xb.sum(axis=0)
    if paired:
        swap = rng.integers(0, 2, size=(draws, Pa)).astype(np.float64)
        moved = exact_products(swap, Xb - Xa)  # what the swapped personas carry from B to A
        sums_a, sums_b = total_a + moved, total_b - moved
    else:
        pooled = np.concatenate([Xa, Xb])
        keys = rng.random((draws, Pa + Pb))
        to_a = (np.argsort(np.argsort(keys, axis=1, kind="stable"), axis=1, kind="stable") < Pa).astype(np.float64)
        sums_a = exact_products(to_a, pooled)
        sums_b = pooled.sum(axis=0) - sums_a
    observed = metrics_from_sums(total_b, Pb, G) - metrics_from_sums(total_a, Pa, G)  # same formula as below
    permuted = metrics_from_sums(sums_b, Pb, G) - metrics_from_sums(sums_a, Pa, G)  # (4, draws, G)
    extreme = np.abs(permuted) >= np.abs(observed)[:, None, :] * (1.0 - TIE)
    p = (1.0 + extreme.sum(axis=1)) / (1.0 + draws)
    return np.where(np.isfinite(observed), p, np.nan)
