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
    """The item-to-group map from group indices (kept under its old name for callers)."""
    return ItemGroups(groups_of_items, n_groups)


def instrument_groups(instrument) -> ItemGroups:
    """An instrument's items mapped to its groups, in the instrument's order."""
    groups = instrument.groups
    return ItemGroups([groups.index(it.group) for it in instrument.items], len(groups))


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


MAX_LUT_BINS = 1 << 14
EXACT_MAX_N = 12  # n**n and every CDF value stay integers below 2**53 up to here
EXACT_MAX_OUTCOMES = 5000  # beyond this many outcomes per cell, direct resampling is cheaper
DIRECT_BLOCK = 1 << 22  # (draws x cells x repetitions) indices drawn at once: bounds memory


def lut_bins(outcomes: int) -> int:
    """A power of two about 16x the number of outcomes (at most MAX_LUT_BINS): then at most
    ~1/16 of the draws fall in a bin that holds a CDF step and need the exact search."""
    bins = 1024
    while bins < 16 * outcomes and bins < MAX_LUT_BINS:
        bins *= 2
    return bins


def inverse_cdf(steps: np.ndarray, total: int, inv: np.ndarray, u: np.ndarray, bins: int = 1024) -> np.ndarray:
    """Outcome index ``#(steps[inv[v]] <= u[v, b])`` for every cell v and draw b, exactly.

    ``steps`` (patterns, M-1) are the inner values of each pattern's integer CDF, whose last
    value is ``total``; ``u`` are integers uniform on [0, total). A lookup table over ``bins``
    equal bins answers every draw whose bin holds no CDF step; a draw in a bin that holds
    steps is found by bisection among those steps only. Integer arithmetic throughout.
    """
    # table[k, j] = #(steps[k] <= j * total / bins): step s counts from bin
    # ceil(s * bins / total) on, so the table is a cumulative histogram.
    n_pat, width = steps.shape[0], bins + 1
    first = (steps * bins + (total - 1)) // total
    hist = np.bincount((first + width * np.arange(n_pat)[:, None]).ravel(), minlength=n_pat * width)
    table = np.cumsum(hist.reshape(n_pat, width), axis=1).ravel()
    at = (u * bins) // total + (inv * width)[:, None]
    pick = np.take(table, at)
    hi_all = np.take(table, at + 1)
    unsure = hi_all != pick
    if unsure.any():
        vi, bi = np.nonzero(unsure)
        lo, hi = pick[vi, bi], hi_all[vi, bi]  # the answer lies in [lo, hi]
        base = inv[vi] * steps.shape[1]
        flat_steps = steps.ravel()
        target = u[vi, bi]
        while True:
            active = lo < hi
            if not active.any():
                break
            mid = (lo + hi) // 2
            below = np.take(flat_steps, base + np.minimum(mid, steps.shape[1] - 1)) <= target
            lo = np.where(active & below, mid + 1, lo)
            hi = np.where(active & ~below, mid, hi)
        pick[vi, bi] = lo
    return pick


_FACTORIAL = np.array([1] + [int(np.prod(np.arange(1, k + 1, dtype=np.int64))) for k in range(1, EXACT_MAX_N + 1)],
                      dtype=np.int64)


def _resample_exact(cells: np.ndarray, scale: np.ndarray, draws: int, rng: np.random.Generator):
    """One resample per (cell, draw), from exact integer outcome tables: ``(mu, sigma, at)``
    with ``mu``/``sigma`` per (pattern, outcome) and ``at`` (V, draws) indices into them.

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
    mu_tab = (s1 / n).T.ravel()
    sig_tab = sample_sd(n, s1, s2).T.ravel()

    u = rng.integers(0, total, size=(len(cells), draws), dtype=np.int64)
    pick = inverse_cdf(cdf[:, :-1], total, inv, u, lut_bins(comp.shape[0]))
    pick += (inv * comp.shape[0])[:, None]
    return mu_tab, sig_tab, pick


def _resample_direct(cells: np.ndarray, scale: np.ndarray, draws: int, rng: np.random.Generator):
    """The bootstrap itself: draw n of a cell's n ratings with replacement, for any n; returns
    ``(mu, sigma, at)`` like ``_resample_exact`` (here every draw is its own table entry).

    Memory is bounded by DIRECT_BLOCK indices at a time, whatever n or the number of
    outcomes; sums are integers, so the moments are exact.
    """
    V = cells.shape[0]
    n = int(cells[0].sum())
    values = np.repeat(np.tile(np.asarray(scale, dtype=np.int64), V), cells.ravel()).reshape(V, n)
    mu_out = np.empty((V, draws))
    sig_out = np.empty((V, draws))
    step = max(1, DIRECT_BLOCK // (draws * n))  # cells per block
    for lo in range(0, V, step):
        hi = min(V, lo + step)
        idx = rng.integers(0, n, size=(hi - lo, draws, n))
        picked = np.take_along_axis(np.broadcast_to(values[lo:hi, None, :], (hi - lo, draws, n)), idx, axis=2)
        s1 = picked.sum(axis=2)
        s2 = (picked * picked).sum(axis=2)
        mu_out[lo:hi] = s1 / n
        sig_out[lo:hi] = sample_sd(n, s1, s2)
    return mu_out.ravel(), sig_out.ravel(), np.arange(V * draws, dtype=np.int64).reshape(V, draws)


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
    CDF when n is small, by drawing the n repetitions themselves otherwise. The drawn values
    are gathered once, in item order, and summed per item; the unchanged cells enter as
    constants: no (draws, P, Q) tensor is ever built, and memory is (draws x cells).
    """
    P, Q, K = counts.shape
    if draws <= 0:
        return np.empty((0, G.width)), np.empty((0, G.width))
    centre = float(np.asarray(scale, dtype=np.float64).mean())  # keeps the sums of squares well conditioned
    cen = mu - centre
    flat = counts.reshape(-1, K)
    distinct = (flat > 0).sum(axis=1)
    var_idx = np.flatnonzero(distinct >= 2)
    fixed = np.ones(P * Q, bool)
    fixed[var_idx] = False
    fixed = fixed.reshape(P, Q)
    sum1 = np.broadcast_to(np.where(fixed, cen, 0.0).sum(axis=0), (draws, Q)).copy()
    sum2 = np.broadcast_to(np.where(fixed, cen * cen, 0.0).sum(axis=0), (draws, Q)).copy()
    sig_sum = np.broadcast_to(np.where(fixed, sigma, 0.0).sum(axis=0), (draws, Q)).copy()
    if var_idx.size:
        # Draw in batches of equal (n, distinct ratings): contiguous slices after this sort.
        signature = flat[var_idx].sum(axis=1) * (K + 1) + distinct[var_idx]
        by_sig = np.argsort(signature, kind="stable")
        var_idx, signature = var_idx[by_sig], signature[by_sig]
        at = np.empty((var_idx.size, draws), dtype=np.int64)
        mu_parts, sig_parts, offset = [], [], 0
        bounds = np.flatnonzero(np.r_[True, signature[1:] != signature[:-1], True])
        for lo, hi in pairwise(bounds):
            m_tab, s_tab, idx = _draw_resampled_cells(flat[var_idx[lo:hi]], scale, draws, rng)
            at[lo:hi] = idx + offset
            offset += m_tab.size
            mu_parts.append(m_tab)
            sig_parts.append(s_tab)
        c_tab = np.concatenate(mu_parts) - centre
        c2_tab = c_tab * c_tab
        s_tab = np.concatenate(sig_parts)
        # Gather once, in item order, so per-item sums are one reduceat per statistic.
        by_item = np.argsort(var_idx % Q, kind="stable")
        q_idx = var_idx[by_item] % Q
        at = at[by_item]  # rows are cells: a row permutation, cheap
        item_starts = np.flatnonzero(np.r_[True, q_idx[1:] != q_idx[:-1]])
        items = q_idx[item_starts]
        sum1[:, items] += np.add.reduceat(np.take(c_tab, at), item_starts, axis=0).T
        sum2[:, items] += np.add.reduceat(np.take(c2_tab, at), item_starts, axis=0).T
        sig_sum[:, items] += np.add.reduceat(np.take(s_tab, at), item_starts, axis=0).T
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
