"""Moral susceptibility S, sigma_bar and robustness R from rating counts, with bootstraps.

Definitions (arXiv 2605.12850 §3.3; the published code uses ddof=1):
  mu_pq, sigma_pq  mean and sample std of the valid repetitions of a cell (sigma = 0 if n = 1)
  tau_q            sample std over retained personas of mu_pq;  S = mean_q tau_q
  sigma_bar        mean over cells of sigma_pq;                  R = 1 / sigma_bar
Group values use the items of the group and the personas retained for the whole run.

Everything is array arithmetic on the (P, Q, K) count tensor: no Python loop per cell or
per bootstrap draw.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from itertools import combinations, pairwise
from math import comb

import numpy as np

from .numerics import exact_products, group_means


@dataclass
class Estimates:
    """Point values and bootstrap replicates for every group (column 0 is "all")."""

    S: np.ndarray  # (G,)
    sigma_bar: np.ndarray  # (G,)
    S_persona: np.ndarray  # (B, G) replicates, persona bootstrap
    sigma_persona: np.ndarray
    S_rerun: np.ndarray  # (Br, G) replicates, rerun bootstrap
    sigma_rerun: np.ndarray


def cell_moments(counts: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(n, mu, sigma)`` per cell, computed exactly from integer sums.

    var = (n*s2 - s1^2) / (n (n-1)) has an integer numerator, so no cancellation error.
    """
    scale = np.asarray(scale, dtype=np.int64)
    n = counts.sum(axis=-1)
    s1 = counts @ scale
    s2 = counts @ (scale * scale)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = s1 / n
    return n, mu, sample_sd(n, s1, s2)


def sample_sd(n, s1, s2) -> np.ndarray:
    """ddof=1 std from integer count, sum and sum of squares; 0 when fewer than 2 values."""
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (n * s2 - s1 * s1) / (n * (n - 1.0))
    return np.sqrt(np.where(n >= 2, np.maximum(var, 0.0), 0.0))


def resample_weights(P: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Persona bootstrap draws as multiplicities: W[b, p] = times persona p is drawn in draw b."""
    idx = rng.integers(0, P, size=(draws, P))
    W = np.bincount((idx + P * np.arange(draws)[:, None]).ravel(), minlength=draws * P)
    return W.reshape(draws, P).astype(np.float64)


class ItemGroups:
    """Which group each item belongs to; column 0 of every group-wise result is "all items"."""

    def __init__(self, groups_of_items: list[int] | np.ndarray, n_groups: int):
        self.of_items = np.asarray(groups_of_items, dtype=np.int64)
        self.n = n_groups

    @property
    def width(self) -> int:
        return self.n + 1

    @property
    def order(self) -> np.ndarray:
        """Item positions sorted by group (stable): ``means(..., presorted=True)`` expects it."""
        return np.argsort(self.of_items, kind="stable")

    def means(self, x: np.ndarray, axis: int = -1, *, presorted: bool = False) -> np.ndarray:
        """Average the item axis into G+1 values (all, then each group), machine-independently."""
        return group_means(x, self.of_items, self.n, axis, presorted=presorted)


def group_matrix(groups_of_items: list[int], n_groups: int) -> ItemGroups:
    """The item-to-group map of an instrument (kept under its old name for callers)."""
    return ItemGroups(groups_of_items, n_groups)


def _tau(mu: np.ndarray) -> np.ndarray:
    """Sample std over personas (axis -2), ddof=1."""
    return np.std(mu, axis=-2, ddof=1)


def point_estimates(mu: np.ndarray, sigma: np.ndarray, G: ItemGroups) -> tuple[np.ndarray, np.ndarray]:
    S = G.means(_tau(mu))
    sigma_bar = G.means(sigma.mean(axis=0))
    return S, sigma_bar


def persona_bootstrap(mu: np.ndarray, sigma: np.ndarray, G: ItemGroups, draws: int, rng: np.random.Generator):
    """Resample personas with replacement; a draw is a multiplicity vector w (sum P), so

    sum_p w_p x_p and sum_p w_p x_p^2 give each draw's mean and ddof=1 variance by one
    matrix product for all draws and items at once (exact integer arithmetic in BLAS, see
    numerics.exact_products, so the kernel and thread count cannot change a bit).
    """
    P = mu.shape[0]
    if draws <= 0:
        return np.empty((0, G.width)), np.empty((0, G.width))
    W = resample_weights(P, draws, rng)
    centred = mu - mu.mean(axis=0)
    Q = mu.shape[1]
    sums = exact_products(W, np.concatenate([centred, centred * centred, sigma], axis=1))
    m1, m2, sig = sums[:, :Q], sums[:, Q : 2 * Q], sums[:, 2 * Q :]
    var = (m2 - m1 * m1 / P) / (P - 1)
    S_b = G.means(np.sqrt(np.maximum(var, 0.0)))
    sig_b = G.means(sig / P)
    return S_b, sig_b


@cache
def compositions(n: int, parts: int) -> np.ndarray:
    """All ways to split n repetitions over ``parts`` categories, each >= 0: (M, parts)."""
    bars = np.array(list(combinations(range(n + parts - 1), parts - 1)), dtype=np.int64).reshape(-1, parts - 1)
    edges = np.concatenate([np.full((len(bars), 1), -1), bars, np.full((len(bars), 1), n + parts - 1)], axis=1)
    out = np.diff(edges, axis=1) - 1
    out.setflags(write=False)
    return out


LUT_BINS = 1024
EXACT_MAX_N = 12  # n**n and every CDF value stay integers below 2**53 up to here
EXACT_MAX_OUTCOMES = 5000  # beyond this many outcomes per cell, direct resampling is cheaper
DIRECT_BLOCK = 1 << 22  # (draws x cells x repetitions) indices drawn at once: bounds memory


def inverse_cdf(steps: np.ndarray, total: int, inv: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Outcome index ``#(steps[inv[v]] <= u[b, v])`` for every draw b and cell v, exactly.

    ``steps`` (patterns, M-1) are the inner values of each pattern's integer CDF, whose last
    value is ``total``; ``u`` are integers uniform on [0, total). A lookup table over
    LUT_BINS equal bins answers every draw whose bin holds no CDF step; the few that fall in
    a bin holding a step are counted exactly. Integer arithmetic throughout: no rounding.
    """
    # table[k, j] = #(steps[k] <= j * total / LUT_BINS): step s counts from bin
    # ceil(s * LUT_BINS / total) on, so the table is a cumulative histogram.
    n_pat, width = steps.shape[0], LUT_BINS + 1
    first = (steps * LUT_BINS + (total - 1)) // total
    hist = np.bincount((first + width * np.arange(n_pat)[:, None]).ravel(), minlength=n_pat * width)
    table = np.cumsum(hist.reshape(n_pat, width), axis=1)
    flat_table = table.ravel()
    at = (u * LUT_BINS) // total + (inv * width)[None, :]
    pick = np.take(flat_table, at)
    unsure = np.take(flat_table, at + 1) != pick
    if unsure.any():
        bi, vi = np.nonzero(unsure)
        pick[bi, vi] = np.count_nonzero(steps[inv[vi]] <= u[bi, vi][:, None], axis=1)
    return pick


_FACTORIAL = np.array([1] + [int(np.prod(np.arange(1, k + 1, dtype=np.int64))) for k in range(1, EXACT_MAX_N + 1)],
                      dtype=np.int64)


def _resample_exact(cells: np.ndarray, scale: np.ndarray, draws: int, rng: np.random.Generator):
    """Mean and std of one resample per (draw, cell), from exact integer outcome tables.

    ``cells`` (V, K) are count vectors that all split the same n over the same number of
    nonzero categories, so they share one list of outcomes (the compositions of n). Each
    distinct count vector c gets its multinomial weights n!/prod(k!) * prod(c^k), integers
    summing to n**n; an integer uniform on [0, n**n) picks the outcome. Nothing is rounded.
    """
    n = int(cells[0].sum())
    used_n = int((cells[0] > 0).sum())
    comp = compositions(n, used_n)  # (M, nz)
    pats, inv = np.unique(cells, axis=0, return_inverse=True)
    inv = inv.ravel()
    used = np.nonzero(pats)[1].reshape(len(pats), used_n)  # nonzero categories, per pattern
    c_used = np.take_along_axis(pats, used, axis=1)
    coef = _FACTORIAL[n] // np.prod(_FACTORIAL[comp], axis=1)
    weights = coef[None, :] * np.prod(np.power(c_used[:, None, :], comp[None, :, :]), axis=2)
    cdf = np.cumsum(weights, axis=1)
    total = n**n
    assert (cdf[:, -1] == total).all()
    vals = np.asarray(scale, dtype=np.int64)[used]
    s1 = comp @ vals.T  # (M, patterns), integer
    s2 = comp @ (vals * vals).T
    mu_tab = (s1 / n).T
    sig_tab = sample_sd(n, s1, s2).T

    u = rng.integers(0, total, size=(draws, len(cells)), dtype=np.int64)
    pick = inverse_cdf(cdf[:, :-1], total, inv, u)
    at = pick + (inv * comp.shape[0])[None, :]
    return np.take(mu_tab, at), np.take(sig_tab, at)


def _resample_direct(cells: np.ndarray, scale: np.ndarray, draws: int, rng: np.random.Generator):
    """The bootstrap itself: draw n of a cell's n ratings with replacement, for any n.

    Memory is bounded by DIRECT_BLOCK indices at a time, whatever n or the number of
    outcomes; sums are integers, so the moments are exact.
    """
    V = cells.shape[0]
    n = int(cells[0].sum())
    values = np.repeat(np.tile(np.asarray(scale, dtype=np.int64), V), cells.ravel()).reshape(V, n)
    mu_out = np.empty((draws, V))
    sig_out = np.empty((draws, V))
    step = max(1, DIRECT_BLOCK // (V * n))
    for lo in range(0, draws, step):
        hi = min(draws, lo + step)
        idx = rng.integers(0, n, size=(hi - lo, V, n))
        picked = np.take_along_axis(np.broadcast_to(values, (hi - lo, V, n)), idx, axis=2)
        s1 = picked.sum(axis=2)
        s2 = (picked * picked).sum(axis=2)
        mu_out[lo:hi] = s1 / n
        sig_out[lo:hi] = sample_sd(n, s1, s2)
    return mu_out, sig_out


def _draw_resampled_cells(cells: np.ndarray, scale: np.ndarray, draws: int, rng: np.random.Generator):
    n = int(cells[0].sum())
    used_n = int((cells[0] > 0).sum())
    if n <= EXACT_MAX_N and comb(n + used_n - 1, used_n - 1) <= EXACT_MAX_OUTCOMES:
        return _resample_exact(cells, scale, draws, rng)
    return _resample_direct(cells, scale, draws, rng)


def rerun_bootstrap(counts: np.ndarray, scale: np.ndarray, mu: np.ndarray, sigma: np.ndarray, G: ItemGroups,
                    draws: int, rng: np.random.Generator):
    """Resample the repetitions inside every cell with replacement.

    Cells with a single distinct rating never change. Every other cell is drawn from the
    exact distribution of its resample (Multinomial(n, counts/n)), in batches of equal
    (n, distinct ratings): by one integer uniform per cell and draw against an exact integer
    CDF when n is small, by drawing the n repetitions themselves otherwise. Per-item sums
    over personas are then updated by the drawn cells' deltas only: no (draws, P, Q) tensor
    is ever built.
    """
    P, Q, K = counts.shape
    if draws <= 0:
        return np.empty((0, G.width)), np.empty((0, G.width))
    col_mean = mu.mean(axis=0)
    centred = mu - col_mean  # centring keeps the sum-of-squares variance well conditioned
    sum1 = np.broadcast_to(centred.sum(axis=0), (draws, Q)).copy()
    sum2 = np.broadcast_to((centred * centred).sum(axis=0), (draws, Q)).copy()
    sig_sum = np.broadcast_to(sigma.sum(axis=0), (draws, Q)).copy()

    flat = counts.reshape(-1, K)
    distinct = (flat > 0).sum(axis=1)
    var_idx = np.flatnonzero(distinct >= 2)
    if var_idx.size:
        # Draw in batches of equal (n, distinct ratings): contiguous slices after this sort.
        signature = flat[var_idx].sum(axis=1) * (K + 1) + distinct[var_idx]
        by_sig = np.argsort(signature, kind="stable")
        var_idx, signature = var_idx[by_sig], signature[by_sig]
        mu_new = np.empty((draws, var_idx.size))
        sig_new = np.empty_like(mu_new)
        bounds = np.flatnonzero(np.r_[True, signature[1:] != signature[:-1], True])
        for lo, hi in pairwise(bounds):
            mu_new[:, lo:hi], sig_new[:, lo:hi] = _draw_resampled_cells(flat[var_idx[lo:hi]], scale, draws, rng)
        # Then regroup by item so per-item sums are one reduceat.
        by_item = np.argsort(var_idx % Q, kind="stable")
        var_idx, mu_new, sig_new = var_idx[by_item], mu_new[:, by_item], sig_new[:, by_item]
        p_idx, q_idx = np.divmod(var_idx, Q)
        c_new = mu_new - col_mean[q_idx]
        c_old = centred[p_idx, q_idx]
        item_starts = np.flatnonzero(np.r_[True, q_idx[1:] != q_idx[:-1]])
        items = q_idx[item_starts]
        sum1[:, items] += np.add.reduceat(c_new - c_old, item_starts, axis=1)
        sum2[:, items] += np.add.reduceat(c_new * c_new - c_old * c_old, item_starts, axis=1)
        sig_sum[:, items] += np.add.reduceat(sig_new - sigma[p_idx, q_idx], item_starts, axis=1)
    var = (sum2 - sum1 * sum1 / P) / (P - 1)
    S_r = G.means(np.sqrt(np.maximum(var, 0.0)))
    sig_r = G.means(sig_sum / P)
    return S_r, sig_r


def estimate(counts: np.ndarray, scale: np.ndarray, G: ItemGroups, *, persona_draws: int, rerun_draws: int,
             rng_persona: np.random.Generator, rng_rerun: np.random.Generator) -> Estimates:
    _, mu, sigma = cell_moments(counts, scale)
    S, sigma_bar = point_estimates(mu, sigma, G)
    S_p, sig_p = persona_bootstrap(mu, sigma, G, persona_draws, rng_persona)
    S_r, sig_r = rerun_bootstrap(counts, scale, mu, sigma, G, rerun_draws, rng_rerun)
    return Estimates(S, sigma_bar, S_p, sig_p, S_r, sig_r)


def bootstrap_se(replicates: np.ndarray) -> np.ndarray:
    if replicates.shape[0] < 2:
        return np.full(replicates.shape[1:], np.nan)
    return np.std(replicates, axis=0, ddof=1)
