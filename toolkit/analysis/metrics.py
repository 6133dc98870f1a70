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
from functools import lru_cache
from itertools import combinations

import numpy as np
from scipy.special import gammaln


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


def group_matrix(groups_of_items: list[int], n_groups: int) -> np.ndarray:
    """(Q, G+1) averaging matrix: column 0 averages all items, column g+1 the items of group g."""
    Q = len(groups_of_items)
    M = np.zeros((Q, n_groups + 1))
    M[:, 0] = 1.0 / Q
    gi = np.asarray(groups_of_items)
    for g in range(n_groups):
        members = gi == g
        M[members, g + 1] = 1.0 / members.sum()
    return M


def _group_mean(x: np.ndarray, G: np.ndarray) -> np.ndarray:
    """Average the item axis into groups. einsum (not BLAS) so the sums are done in one fixed
    order whatever the thread count: results stay bit-identical across workers."""
    return np.einsum("...q,qg->...g", x, G)


def _tau(mu: np.ndarray) -> np.ndarray:
    """Sample std over personas (axis -2), ddof=1."""
    return np.std(mu, axis=-2, ddof=1)


def point_estimates(mu: np.ndarray, sigma: np.ndarray, G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    S = _group_mean(_tau(mu), G)
    sigma_bar = _group_mean(sigma.mean(axis=0), G)
    return S, sigma_bar


def persona_bootstrap(mu: np.ndarray, sigma: np.ndarray, G: np.ndarray, draws: int, rng: np.random.Generator):
    """Resample personas with replacement; a draw is a multiplicity vector w (sum P), so

    sum_p w_p x_p and sum_p w_p x_p^2 give each draw's mean and ddof=1 variance by one
    matrix product for all draws and items at once.
    """
    P = mu.shape[0]
    if draws <= 0:
        return np.empty((0, G.shape[1])), np.empty((0, G.shape[1]))
    W = resample_weights(P, draws, rng)
    centred = mu - mu.mean(axis=0)
    Q = mu.shape[1]
    sums = np.einsum("bp,pq->bq", W, np.concatenate([centred, centred * centred, sigma], axis=1))
    m1, m2, sig = sums[:, :Q], sums[:, Q : 2 * Q], sums[:, 2 * Q :]
    var = (m2 - m1 * m1 / P) / (P - 1)
    S_b = _group_mean(np.sqrt(np.maximum(var, 0.0)), G)
    sig_b = _group_mean(sig / P, G)
    return S_b, sig_b


@lru_cache(maxsize=None)
def compositions(n: int, parts: int) -> np.ndarray:
    """All ways to split n repetitions over ``parts`` categories, each >= 0: (M, parts)."""
    bars = np.array(list(combinations(range(n + parts - 1), parts - 1)), dtype=np.int64).reshape(-1, parts - 1)
    edges = np.concatenate([np.full((len(bars), 1), -1), bars, np.full((len(bars), 1), n + parts - 1)], axis=1)
    out = np.diff(edges, axis=1) - 1
    out.setflags(write=False)
    return out


LUT_BINS = 1024


def inverse_cdf(steps: np.ndarray, inv: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Outcome index ``#(steps[inv[v]] <= u[b, v])`` for every draw b and cell v, exactly.

    ``steps`` (patterns, M-1) are the inner CDF values of each pattern. A lookup table over
    LUT_BINS equal bins of [0, 1) answers every uniform whose bin holds no CDF step; the few
    that fall in a bin holding a step are counted exactly.
    """
    # table[k, j] = #(steps[k] <= j / LUT_BINS): a step s counts from bin ceil(s * LUT_BINS)
    # on (exact: LUT_BINS is a power of two), so the table is a cumulative histogram.
    n_pat, width = steps.shape[0], LUT_BINS + 1
    first = np.ceil(steps * LUT_BINS).astype(np.int64)
    hist = np.bincount((first + width * np.arange(n_pat)[:, None]).ravel(), minlength=n_pat * width)
    table = np.cumsum(hist.reshape(n_pat, width), axis=1)
    flat_table = table.ravel()
    at = (u * LUT_BINS).astype(np.int64) + (inv * width)[None, :]
    pick = np.take(flat_table, at)
    unsure = np.take(flat_table, at + 1) != pick
    if unsure.any():
        bi, vi = np.nonzero(unsure)
        pick[bi, vi] = np.count_nonzero(steps[inv[vi]] <= u[bi, vi][:, None], axis=1)
    return pick


def _draw_resampled_cells(cells: np.ndarray, scale: np.ndarray, u: np.ndarray):
    """Mean and std of one resample per (draw, cell), by inverse CDF on exact outcome tables.

    ``cells`` (V, K) are count vectors that all split the same n over the same number of
    nonzero categories, so they share one list of outcomes (the compositions of n); each
    distinct count vector gets its multinomial CDF over those outcomes, and a uniform
    ``u[b, v]`` picks the outcome by counting the CDF steps it passes.
    """
    n = int(cells[0].sum())
    used_n = int((cells[0] > 0).sum())
    comp = compositions(n, used_n)  # (M, nz)
    pats, inv = np.unique(cells, axis=0, return_inverse=True)
    inv = inv.ravel()
    used = np.nonzero(pats)[1].reshape(len(pats), used_n)  # nonzero categories, per pattern
    c_used = np.take_along_axis(pats, used, axis=1)
    logp = gammaln(n + 1) - gammaln(comp + 1).sum(axis=1) + np.einsum("mk,uk->um", comp, np.log(c_used / n))
    prob = np.exp(logp - logp.max(axis=1, keepdims=True))
    cdf = np.cumsum(prob, axis=1)
    cdf /= cdf[:, -1:]
    vals = np.asarray(scale, dtype=np.int64)[used]
    s1 = np.einsum("mk,uk->um", comp, vals)
    s2 = np.einsum("mk,uk->um", comp, vals * vals)
    mu_tab = s1 / n
    sig_tab = sample_sd(n, s1, s2)

    pick = inverse_cdf(cdf[:, :-1], inv, u)
    at = pick + (inv * comp.shape[0])[None, :]
    mu_out = np.take(mu_tab, at)
    sig_out = np.take(sig_tab, at)
    return mu_out, sig_out


def rerun_bootstrap(counts: np.ndarray, scale: np.ndarray, mu: np.ndarray, sigma: np.ndarray, G: np.ndarray,
                    draws: int, rng: np.random.Generator):
    """Resample the repetitions inside every cell with replacement.

    Cells with a single distinct rating never change. Every other cell is drawn from the
    exact distribution of its resample (Multinomial(n, counts/n)) with one uniform number per
    cell and draw; cells are handled in a few batches of equal (n, distinct ratings). Per-item
    sums over personas are then updated by the drawn cells' deltas only: no (draws, P, Q)
    tensor is ever built.
    """
    P, Q, K = counts.shape
    if draws <= 0:
        return np.empty((0, G.shape[1])), np.empty((0, G.shape[1]))
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
        u = rng.random((draws, var_idx.size))
        mu_new = np.empty_like(u)
        sig_new = np.empty_like(u)
        bounds = np.flatnonzero(np.r_[True, signature[1:] != signature[:-1], True])
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            mu_new[:, lo:hi], sig_new[:, lo:hi] = _draw_resampled_cells(flat[var_idx[lo:hi]], scale, u[:, lo:hi])
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
    S_r = _group_mean(np.sqrt(np.maximum(var, 0.0)), G)
    sig_r = _group_mean(sig_sum / P, G)
    return S_r, sig_r


def estimate(counts: np.ndarray, scale: np.ndarray, G: np.ndarray, *, persona_draws: int, rerun_draws: int,
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
