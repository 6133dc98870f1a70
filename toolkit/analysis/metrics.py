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

import numpy as np


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
        var = (n * s2 - s1 * s1) / (n * (n - 1.0))
    sigma = np.sqrt(np.where(n >= 2, var, 0.0))
    return n, mu, sigma


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


def _tau(mu: np.ndarray) -> np.ndarray:
    """Sample std over personas (axis -2), ddof=1."""
    return np.std(mu, axis=-2, ddof=1)


def point_estimates(mu: np.ndarray, sigma: np.ndarray, G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    S = _tau(mu) @ G
    sigma_bar = sigma.mean(axis=0) @ G
    return S, sigma_bar


def persona_bootstrap(mu: np.ndarray, sigma: np.ndarray, G: np.ndarray, draws: int, rng: np.random.Generator):
    """Resample personas with replacement; a draw is a multiplicity vector w (sum P), so

    sum_p w_p x_p and sum_p w_p x_p^2 give each draw's mean and ddof=1 variance by one
    matrix product for all draws and items at once.
    """
    P = mu.shape[0]
    if draws <= 0:
        return np.empty((0, G.shape[1])), np.empty((0, G.shape[1]))
    idx = rng.integers(0, P, size=(draws, P))
    W = np.bincount((idx + P * np.arange(draws)[:, None]).ravel(), minlength=draws * P)
    W = W.reshape(draws, P).astype(np.float64)
    centred = mu - mu.mean(axis=0)
    m1 = W @ centred
    m2 = W @ (centred * centred)
    var = (m2 - m1 * m1 / P) / (P - 1)
    S_b = np.sqrt(np.maximum(var, 0.0)) @ G
    sig_b = (W @ sigma) / P @ G
    return S_b, sig_b


def rerun_bootstrap(counts: np.ndarray, scale: np.ndarray, mu: np.ndarray, sigma: np.ndarray, G: np.ndarray,
                    draws: int, rng: np.random.Generator):
    """Resample the repetitions inside every cell with replacement.

    A resampled cell is Multinomial(n, counts/n). Cells with a single distinct rating never
    change, so only cells with >= 2 distinct values are drawn, by a chain of conditional
    binomials over their nonzero categories only (one binomial for a two-valued cell).
    """
    P, Q, K = counts.shape
    if draws <= 0:
        return np.empty((0, G.shape[1])), np.empty((0, G.shape[1]))
    flat = counts.reshape(-1, K)
    nonzero = flat > 0
    nz = nonzero.sum(axis=1)
    var_idx = np.flatnonzero(nz >= 2)
    mu_star = np.broadcast_to(mu.reshape(-1), (draws, P * Q)).copy()
    sig_star = np.broadcast_to(sigma.reshape(-1), (draws, P * Q)).copy()
    if var_idx.size:
        cv = flat[var_idx]
        nzv = nz[var_idx]
        order = np.argsort(~nonzero[var_idx], axis=1, kind="stable")  # nonzero categories first
        cs = np.take_along_axis(cv, order, axis=1)
        vals = np.asarray(scale, dtype=np.int64)[order]
        n = cv.sum(axis=1)
        V = var_idx.size
        drawn = np.zeros((draws, V, K), dtype=np.int64)
        rem_n = np.broadcast_to(n, (draws, V)).copy()
        rem_c = n.astype(np.float64).copy()
        for j in range(int(nzv.max()) - 1):
            active = np.flatnonzero(nzv > j + 1)
            p = cs[active, j] / rem_c[active]
            x = rng.binomial(rem_n[:, active], p)
            drawn[:, active, j] = x
            rem_n[:, active] -= x
            rem_c[active] -= cs[active, j]
        drawn[:, np.arange(V), nzv - 1] = rem_n
        s1 = np.einsum("bvk,vk->bv", drawn, vals)
        s2 = np.einsum("bvk,vk->bv", drawn, vals * vals)
        mu_star[:, var_idx] = s1 / n
        sig_star[:, var_idx] = np.sqrt(np.maximum((n * s2 - s1 * s1) / (n * (n - 1.0)), 0.0))
    mu_star = mu_star.reshape(draws, P, Q)
    S_r = _tau(mu_star) @ G
    sig_r = sig_star.reshape(draws, P, Q).mean(axis=1) @ G
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
