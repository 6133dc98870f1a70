"""Moral susceptibility S, sigma_bar and robustness R from rating counts, with bootstraps.

Definitions (arXiv 2605.12850 §3.3; the published code uses ddof=1):
  mu_pq, sigma_pq  mean and sample std of the valid repetitions of a cell (sigma = 0 if n = 1)
  tau_q            sample std over retained personas of mu_pq;  S = mean_q tau_q
  sigma_bar        mean over cells of sigma_pq;                  R = 1 / sigma_bar
  S_corrected      mean_q sqrt(max(tau_q^2 - mean_p sigma_pq^2 / n_pq, 0)): S without the share
                   of tau_q^2 that finite repetitions add (docs/statistics.md derives it)
  sigma_bar_corrected  mean over the cells with n_pq >= 2 of sigma_pq / c4(n_pq): the ddof=1
                   sample SD is biased low (E[s] = c4(n) sigma for normal answers), and a cell
                   with one answer says nothing of its spread; R_corrected = 1 / that
                   (companions of the published values, which stay as they are)
Group values use the items of the group and the personas retained for the whole run.

Everything is array arithmetic on the (P, Q, K) count tensor: no Python loop per cell or
per bootstrap draw.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from itertools import combinations, pairwise
from math import comb, prod
from typing import TYPE_CHECKING

import numpy as np

from ..numerics import c4, exact_products, group_means
from . import kernels

if TYPE_CHECKING:
    from ..protocol.instrument import Instrument


@dataclass
class Estimates:
    """Point values and bootstrap replicates for every group (column 0 is "all")."""

    S: np.ndarray  # (G,)
    sigma_bar: np.ndarray  # (G,)
    S_corrected: np.ndarray  # (G,)
    S_persona: np.ndarray  # (B, G) replicates, persona bootstrap
    sigma_persona: np.ndarray
    S_corrected_persona: np.ndarray
    S_rerun: np.ndarray  # (Br, G) replicates, rerun bootstrap
    sigma_rerun: np.ndarray
    S_corrected_rerun: np.ndarray
    # the bias-corrected companion of sigma_bar (docstring above), and the cells it leaves out
    sigma_corrected: np.ndarray | None = None  # (G,)
    sigma_corrected_persona: np.ndarray | None = None  # (B, G)
    sigma_corrected_rerun: np.ndarray | None = None  # (Br, G)
    cells_excluded: np.ndarray | None = None  # (G,) cells with fewer than 2 valid answers


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


def sample_sd(n: np.ndarray | int, s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """ddof=1 std from integer count, sum and sum of squares; 0 when fewer than 2 values."""
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (n * s2 - s1 * s1) / (n * (n - 1.0))
    return np.sqrt(np.where(n >= 2, np.maximum(var, 0.0), 0.0))


def resample_weights(P: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Persona bootstrap draws as multiplicities: W[b, p] = times persona p is drawn in draw b."""
    idx = rng.integers(0, P, size=(draws, P))
    count = kernels.multiplicities()
    if count is not None:
        return count(idx, P)
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


def instrument_groups(instrument: Instrument) -> ItemGroups:
    """An instrument's items mapped to its groups, in the instrument's order."""
    groups = instrument.groups
    return ItemGroups([groups.index(it.group) for it in instrument.items], len(groups))


def _tau(mu: np.ndarray) -> np.ndarray:
    """Sample std over personas (axis -2), ddof=1."""
    return np.asarray(np.std(mu, axis=-2, ddof=1))


def inverse_c4(n: np.ndarray | int) -> np.ndarray:
    """1 / c4(n) per cell (numerics.c4, correctly rounded, one value per distinct n), and 0 for a
    cell with fewer than 2 answers, which the corrected sigma_bar leaves out."""
    n = np.asarray(n)
    values, inverse = np.unique(n, return_inverse=True)
    table = np.array([1.0 / c4(int(v)) if v >= 2 else 0.0 for v in values.tolist()])
    return np.asarray(table[inverse.reshape(n.shape)])


def corrected_sigma_bar(sums: np.ndarray, included: np.ndarray, G: ItemGroups) -> np.ndarray:
    """Per group, the sum of the cells' sigma / c4(n) over the sum of the cells counted
    (per-item sums on the last axis): their mean over the group's included cells. Both go
    through the same group means, whose item counts cancel."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(G.means(sums) / G.means(included))


def repetition_noise(n: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """sigma_pq^2 / n_pq, the variance finite repetitions add to a cell mean.

    A cell with one valid answer has a mean as noisy as a single answer, but no SD of its own:
    counting its noise as 0 (as S_corrected once did) leaves that noise in the persona spread
    and biases S_corrected high. Such a cell (on a (personas, items) grid) gets its item's
    pooled within-cell variance, the mean sigma^2 of the item's cells with two or more answers
    (an unbiased estimate of sigma^2, so of the noise of a one-answer mean); 0 when the item
    has no such cell. Cells with no answer add nothing."""
    n = np.asarray(n)
    with np.errstate(invalid="ignore", divide="ignore"):
        noise = np.where(n >= 2, sigma * sigma / n, 0.0)
        one = n == 1
        if n.ndim == 2 and one.any():
            counted = n >= 2
            pooled = np.where(counted, sigma * sigma, 0.0).sum(axis=0) / counted.sum(axis=0)
            noise = np.where(one, np.where(np.isfinite(pooled), pooled, 0.0)[None, :], noise)
    return np.asarray(noise)


def corrected_tau(var: np.ndarray, noise_mean: np.ndarray) -> np.ndarray:
    """sqrt(max(tau^2 - mean noise, 0)) per item: the across-persona spread of the cells' true means."""
    return np.asarray(np.sqrt(np.maximum(var - noise_mean, 0.0)))


def point_estimates(mu: np.ndarray, sigma: np.ndarray, G: ItemGroups,
                    noise: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """S, sigma_bar and S_corrected per group (``noise`` = repetition_noise per cell)."""
    tau = _tau(mu)
    S = G.means(tau)
    sigma_bar = G.means(sigma.mean(axis=0))
    noise_mean = np.zeros(mu.shape[1]) if noise is None else noise.mean(axis=0)
    S_corr = G.means(corrected_tau(tau * tau, noise_mean))
    return S, sigma_bar, S_corr


def persona_bootstrap(mu: np.ndarray, sigma: np.ndarray, noise: np.ndarray, G: ItemGroups, draws: int,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resample personas with replacement; a draw is a multiplicity vector w (sum P), so

    sum_p w_p x_p and sum_p w_p x_p^2 give each draw's mean and ddof=1 variance by one
    matrix product for all draws and items at once (exact integer arithmetic in BLAS, see
    numerics.exact_products, so the kernel and thread count cannot change a bit).
    """
    if draws <= 0:
        return (np.empty((0, G.width)),) * 3
    return persona_replicates(resample_weights(mu.shape[0], draws, rng), mu, sigma, noise, G)


def persona_replicates(W: np.ndarray, mu: np.ndarray, sigma: np.ndarray, noise: np.ndarray,
                       G: ItemGroups) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """S, sigma_bar and S_corrected of the persona draws ``W`` (multiplicities, draws x P)."""
    return from_sums(exact_products(W, persona_values(mu, sigma, noise, mu.mean(axis=0))), W.shape[1], G)


def persona_values(mu: np.ndarray, sigma: np.ndarray, noise: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Per persona, what every metric sums over personas, item by item: (P, 4Q), the blocks
    (mu - c), (mu - c)^2, sigma and sigma^2/n. Any weighting of personas (a bootstrap draw, a
    left-out persona, a permutation) is then one product with these rows."""
    c = mu - centre
    return np.concatenate([c, c * c, sigma, noise], axis=1)


def from_sums(sums: np.ndarray, P: int, G: ItemGroups) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """S, sigma_bar and S_corrected from (..., 4Q) sums of ``persona_values`` over P personas."""
    Q = sums.shape[-1] // 4
    return _replicates(sums[..., :Q], sums[..., Q : 2 * Q], sums[..., 2 * Q : 3 * Q], sums[..., 3 * Q :], P, G)


def _replicates(m1: np.ndarray, m2: np.ndarray, sig: np.ndarray, noise: np.ndarray, P: int,
                G: ItemGroups) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """S, sigma_bar and S_corrected of each draw from its per-item sums over personas of
    (mu - c), (mu - c)^2, sigma and sigma^2/n (draws x items each)."""
    var = (m2 - m1 * m1 / P) / (P - 1)
    S_b = G.means(np.sqrt(np.maximum(var, 0.0)))
    sig_b = G.means(sig / P)
    S_corr_b = G.means(corrected_tau(var, noise / P))
    return S_b, sig_b, S_corr_b


@cache
def compositions(n: int, parts: int) -> np.ndarray:
    """All ways to split n repetitions over ``parts`` categories, each >= 0: (M, parts)."""
    bars = np.array(list(combinations(range(n + parts - 1), parts - 1)), dtype=np.int64).reshape(-1, parts - 1)
    edges = np.concatenate([np.full((len(bars), 1), -1), bars, np.full((len(bars), 1), n + parts - 1)], axis=1)
    out = np.diff(edges, axis=1) - 1
    out.setflags(write=False)
    return out


EXACT_MAX_N = 12  # n**n * outcomes stays below 2**63 up to here, so every weight is an integer
EXACT_MAX_OUTCOMES = 5000  # beyond this many outcomes per cell, direct resampling is cheaper
DIRECT_BLOCK = 1 << 22  # (draws x cells x repetitions) indices drawn at once: bounds memory
RERUN_BLOCK = 1 << 14  # (cells x draws) drawn at once by the exact sampler: temporaries stay in cache
_U64 = 1 << 64

_FACTORIAL = [1]
for _k in range(1, EXACT_MAX_N + 1):
    _FACTORIAL.append(_FACTORIAL[-1] * _k)


@cache
def alias_table(used_counts: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Walker's alias table, in exact integers, for resampling a cell with these (nonzero) counts.

    Outcome i (row i of ``compositions(n, len(used_counts))``) has the multinomial weight
    w_i = n!/prod(k!) * prod(c^k), an integer; the weights sum to T = n**n. Bucket j of M keeps
    itself with probability ``keep[j] / T`` and else gives ``alias[j]``; Vose's pairing on
    integers M*w_i leaves no rounding, so each outcome has probability exactly w_i / T.
    Cached: a cell's table depends only on its nonzero counts, and few such tuples exist.
    """
    n, parts = sum(used_counts), len(used_counts)
    comp = compositions(n, parts)
    total, size = n**n, len(comp)
    mass = (size * _multinomial_weights(n, used_counts, comp)).tolist()
    assert sum(mass) == size * total
    keep, alias = [total] * size, list(range(size))
    small = [i for i, m in enumerate(mass) if m < total]
    large = [i for i, m in enumerate(mass) if m >= total]
    while small and large:
        s, big = small.pop(), large.pop()
        keep[s], alias[s] = mass[s], big
        mass[big] -= total - mass[s]
        (small if mass[big] < total else large).append(big)
    return np.array(keep, dtype=np.uint64), np.array(alias, dtype=np.int64)


def _multinomial_weights(n: int, counts: tuple[int, ...], outcomes: np.ndarray) -> np.ndarray:
    """n!/prod(k_i!) * prod(c_i^k_i) per outcome row: the number of the n**n equally likely
    resamples (draws of n repetitions with replacement) that give those counts. Integer
    arithmetic, exact in int64: every factor and product is at most n**n <= 12**12 (and the
    caller's size * weight at most 5000 * 12**12 < 2**63)."""
    fact = np.array(_FACTORIAL, dtype=np.int64)
    coefficient = fact[n] // np.prod(fact[outcomes], axis=1)
    powers = np.prod(np.array(counts, dtype=np.int64)[None, :] ** outcomes, axis=1)
    return np.asarray(coefficient * powers)


def word_multiple(total: int) -> int:
    """L = 2**64 // total: a word below L*total has an exactly uniform quotient by L. The one rule
    for the words, the bucket widths and the bounds of ExactCells (total = outcomes x n**n)."""
    return _U64 // total


def uniform_words(rng: np.random.Generator, shape: tuple[int, ...], total: int) -> np.ndarray:
    """Raw 64-bit words ``r`` uniform on [0, L*total), L = 2**64 // total.

    ``r // L`` is then exactly uniform on [0, total), and so is every block of L consecutive
    words: comparisons can be made on ``r`` against thresholds scaled by L. Words at or above
    L*total (probability < total / 2**64) are drawn again, in order, from the same stream.
    """
    mult = word_multiple(total)
    raw = rng.bit_generator.random_raw(prod(shape)).reshape(shape)
    limit = mult * total
    if limit < _U64 and raw.size and int(raw.max()) >= limit:  # rare: one pass, no mask, when none is
        bad = raw >= np.uint64(limit)
        while bad.any():
            raw[bad] = rng.bit_generator.random_raw(int(bad.sum()))
            bad = raw >= np.uint64(limit)
    return raw


class ExactCells:
    """Resampling from exact integer alias tables, for cells of small n.

    ``cells`` (V, K) are count vectors that all split the same n over the same number of
    nonzero categories, so they share one list of outcomes (the compositions of n) and the
    alias tables of their distinct patterns stack into one array. A word uniform on
    [0, L*M*T) gives the bucket (its quotient by L*T) and a remainder compared with the
    bucket's threshold scaled by L: one division by a constant per draw, nothing rounded.
    """

    def __init__(self, cells: np.ndarray, scale: np.ndarray, centre: float):
        n = int(cells[0].sum())
        used_n = int((cells[0] > 0).sum())
        self.size, self.total = compositions(n, used_n).shape[0], n**n
        pats, inv = _unique_rows(cells, n)
        self.base = (inv * self.size).astype(np.uint64)  # where each cell's pattern starts in the tables
        used = np.nonzero(pats)[1].reshape(len(pats), used_n)  # nonzero categories, per pattern
        c_used = np.take_along_axis(pats, used, axis=1)
        values = np.asarray(scale, dtype=np.int64)[used]
        mult = word_multiple(self.size * self.total)
        self.width = np.uint64(mult * self.total)
        assert self.size * mult * self.total < _U64, "bucket bounds must fit 64 bits"
        tables = [_pattern_table(tuple(c), tuple(v), centre) for c, v in zip(c_used.tolist(), values.tolist())]
        self.bound = np.concatenate([b for b, _ in tables])
        self.stats = np.concatenate([s for _, s in tables])  # (patterns x outcomes x 2, 5)

    def block(self, draws: int) -> int:
        """Cells drawn at once: RERUN_BLOCK words, so every temporary stays in cache."""
        return max(1, RERUN_BLOCK // draws)

    def words(self, lo: int, hi: int, draws: int, rng: np.random.Generator) -> np.ndarray:
        """The uniform words of cells lo:hi, (hi - lo, draws): the bucket is a word's quotient by
        ``width``, and the bucket keeps its own outcome while the word is below its ``bound``."""
        return uniform_words(rng, (hi - lo, draws), self.size * self.total)

    def draw(self, lo: int, hi: int, draws: int, rng: np.random.Generator) -> np.ndarray:
        """Rows of ``stats`` for cells lo:hi, (hi - lo, draws): 2 * bucket, plus 1 for its alias.

        No select between bucket and alias (a branch per draw that mispredicts half the time):
        the rows of a bucket's own outcome and of its alias sit side by side in ``stats``."""
        words = self.words(lo, hi, draws, rng)
        at: np.ndarray = words // self.width  # the bucket, then where the cell's pattern's buckets start
        at += self.base[lo:hi, None]
        at_ = at.view(np.int64)  # < 2**63: the tables are far smaller
        alias = words >= np.take(self.bound, at_, mode="clip")
        at_ += at_
        at_ += alias
        return at_

    def values(self, lo: int, hi: int, draws: int, rng: np.random.Generator) -> np.ndarray:
        """(mu - centre, its square, sigma, sigma^2/n) of each resample: (hi - lo, draws, 4)."""
        return np.take(self.stats, self.draw(lo, hi, draws, rng), axis=0, mode="clip")  # indices are in range


@cache
def _pattern_table(counts: tuple[int, ...], values: tuple[int, ...], centre: float) -> tuple[np.ndarray, np.ndarray]:
    """One pattern's share of the ExactCells tables: per bucket j, the word below which it keeps
    its own outcome (keep[j] * L + j * L * T, so no remainder is needed; every such bound is
    below M * L * T < 2**64), and the ``_cell_stats`` rows of its own outcome and of its alias
    (rows 2j and 2j + 1). Cached: few (counts, ratings) patterns exist, and runs share them."""
    n = sum(counts)
    comp = compositions(n, len(counts))  # (M, nz)
    size = len(comp)
    mult = word_multiple(size * n**n)
    keep, alias = alias_table(counts)
    bound = keep * np.uint64(mult) + np.arange(size, dtype=np.uint64) * np.uint64(mult * n**n)
    vals = np.asarray(values, dtype=np.int64)
    s1, s2 = comp @ vals, comp @ (vals * vals)
    stats = _cell_stats(s1 / n - centre, sample_sd(n, s1, s2), n)  # (M, 5)
    pair = np.stack([stats, stats[alias]], axis=1).reshape(2 * size, stats.shape[1])
    bound.setflags(write=False)
    pair.setflags(write=False)
    return bound, pair


class DirectCells:
    """The bootstrap itself, for any n: draw n of a cell's n repetitions with replacement.

    A cell's repetitions, sorted, put rating k at positions [cum[k-1], cum[k]). So a drawn
    position i is at or above rating k exactly when i >= cum[k], and the number of draws at
    or above each rating gives the resample's counts, with no gather: small unsigned
    positions and one comparison per rating. Sums are integers, so the moments are exact;
    memory is bounded by DIRECT_BLOCK positions at a time, whatever n.
    """

    def __init__(self, cells: np.ndarray, scale: np.ndarray, centre: float):
        self.n = int(cells[0].sum())
        self.cum = np.cumsum(cells, axis=1)[:, :-1]  # (V, K-1): where each rating after the first starts
        self.scale = np.asarray(scale, dtype=np.int64)
        self.centre = centre
        self.dtype = np.uint16 if self.n < 1 << 16 else np.int64

    def block(self, draws: int) -> int:
        """Cells drawn at once: DIRECT_BLOCK positions, whatever n."""
        return max(1, DIRECT_BLOCK // (draws * self.n))

    def values(self, lo: int, hi: int, draws: int, rng: np.random.Generator) -> np.ndarray:
        """(mu - centre, its square, sigma, sigma^2/n) of each resample: (hi - lo, draws, 4)."""
        pos: np.ndarray = rng.integers(0, self.n, size=(hi - lo, draws, self.n), dtype=self.dtype)
        cum: np.ndarray = self.cum[lo:hi].astype(self.dtype)
        # at_least[k] = draws at or above rating k+1; rating 0 has all n
        at_least = np.stack([np.count_nonzero(pos >= cum[:, k, None, None], axis=2)
                             for k in range(cum.shape[1])]).astype(np.int64)
        steps = np.diff(self.scale)[:, None, None]
        s1 = self.n * self.scale[0] + (steps * at_least).sum(axis=0)
        s2 = self.n * self.scale[0] ** 2 + (np.diff(self.scale * self.scale)[:, None, None] * at_least).sum(axis=0)
        return _cell_stats(s1 / self.n - self.centre, sample_sd(self.n, s1, s2), self.n)


def _unique_rows(cells: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct count vectors and each row's index among them (order immaterial to results).

    Rows are read as base-(n+1) numbers, one integer each, which sorts far faster than rows."""
    K = cells.shape[1]
    if (n + 1) ** K >= 1 << 62:
        pats, inv = np.unique(cells, axis=0, return_inverse=True)
        return pats, inv.ravel()
    keys = cells @ ((n + 1) ** np.arange(K, dtype=np.int64))
    _, first, inv = np.unique(keys, return_index=True, return_inverse=True)
    return cells[first], inv.ravel()


def _cell_stats(centred_mean: np.ndarray, sd: np.ndarray, n: np.ndarray | int) -> np.ndarray:
    """What the rerun bootstrap sums over personas, per cell, on a last axis of 5:
    (mu - c, (mu - c)^2, sigma, sigma^2/n, sigma/c4(n) or 0 for n < 2)."""
    return np.stack([centred_mean, centred_mean * centred_mean, sd, repetition_noise(np.asarray(n), sd),
                     sd * inverse_c4(n)], axis=-1)


def cell_sampler(cells: np.ndarray, scale: np.ndarray, centre: float = 0.0) -> ExactCells | DirectCells:
    """The sampler for a batch of cells sharing n and their number of distinct ratings."""
    n = int(cells[0].sum())
    used_n = int((cells[0] > 0).sum())
    if n <= EXACT_MAX_N and comb(n + used_n - 1, used_n - 1) <= EXACT_MAX_OUTCOMES:
        return ExactCells(cells, scale, centre)
    return DirectCells(cells, scale, centre)


def rerun_bootstrap(counts: np.ndarray, scale: np.ndarray, mu: np.ndarray, sigma: np.ndarray, G: ItemGroups,
                    draws: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """S, sigma_bar and S_corrected replicates of the rerun bootstrap (``rerun_sums``)."""
    acc = rerun_sums(counts, scale, mu, sigma, draws, rng)
    if acc is None:
        return (np.empty((0, G.width)),) * 3
    return rerun_replicates(acc, counts.shape[0], G)


def rerun_replicates(acc: np.ndarray, P: int, G: ItemGroups) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """S, sigma_bar and S_corrected from ``rerun_sums`` over P personas."""
    return _replicates(acc[..., 0].T, acc[..., 1].T, acc[..., 2].T, acc[..., 3].T, P, G)


def rerun_sums(counts: np.ndarray, scale: np.ndarray, mu: np.ndarray, sigma: np.ndarray, draws: int,
               rng: np.random.Generator) -> np.ndarray | None:
    """Per item and draw, the sums over personas of ``_cell_stats`` of resampled cells,
    (Q, draws, 5) (None for no draws): resample the repetitions inside every cell with replacement.

    Cells with a single distinct rating never change and enter the per-item sums as
    constants. Every other cell is drawn from the exact distribution of its resample
    (Multinomial(n, counts/n)), in batches of equal (n, distinct ratings) sorted by item:
    from exact integer alias tables when n is small, by drawing the n repetitions themselves
    otherwise. Blocks of a fixed number of cells keep every temporary in cache and memory at
    (block x draws); no (draws, P, Q) tensor is ever built. The block size is a constant, so
    the order of every sum, and so every bit, is the same on any machine.
    """
    P, Q, K = counts.shape
    if draws <= 0:
        return None
    centre = float(np.asarray(scale, dtype=np.float64).mean())  # keeps the sums of squares well conditioned
    flat = counts.reshape(-1, K)
    distinct = (flat > 0).sum(axis=1)
    fixed = (distinct < 2).reshape(P, Q)
    const = _cell_stats(np.where(fixed, mu - centre, 0.0), np.where(fixed, sigma, 0.0), 0).sum(axis=0)  # (Q, 5)
    # a fixed cell's noise: 0 for n >= 2 (its SD is 0), the item's pooled variance for n = 1
    const[:, 3] = np.where(fixed, repetition_noise(counts.sum(axis=2), sigma), 0.0).sum(axis=0)
    acc = np.repeat(const[:, None, :], draws, axis=1)  # (Q, draws, 4)
    var_idx = np.flatnonzero(distinct >= 2)
    if var_idx.size:
        signature = flat[var_idx].sum(axis=1) * (K + 1) + distinct[var_idx]
        order = np.argsort(signature * Q + var_idx % Q, kind="stable")  # by batch, then by item inside it
        var_idx, signature = var_idx[order], signature[order]
        bounds = np.flatnonzero(np.r_[True, signature[1:] != signature[:-1], True])
        kernel = kernels.rerun_block_sums()  # the same sums compiled, when numba is there and worth it
        for lo, hi in pairwise(bounds.tolist()):
            sampler = cell_sampler(flat[var_idx[lo:hi]], scale, centre)
            items = var_idx[lo:hi] % Q
            step = sampler.block(draws)
            for a in range(0, hi - lo, step):
                b = min(hi - lo, a + step)
                q = items[a:b]
                if kernel is not None and isinstance(sampler, ExactCells):
                    words = sampler.words(a, b, draws, rng)
                    kernel(words, words // sampler.width, sampler.base[a:b], sampler.bound, sampler.stats, q, acc)
                    continue
                vals = sampler.values(a, b, draws, rng)
                edges = np.flatnonzero(np.concatenate(([True], q[1:] != q[:-1], [True])))
                for s, e in pairwise(edges.tolist()):
                    # A reduction over the first axis adds rows in order, each element on
                    # its own: the same bits for any SIMD width (tests/test_metrics.py).
                    acc[q[s]] += np.add.reduce(vals[s:e], axis=0)
    return acc


def estimate(counts: np.ndarray, scale: np.ndarray, G: ItemGroups, *, persona_draws: int, rerun_draws: int,
             rng_persona: np.random.Generator, rng_rerun: np.random.Generator) -> Estimates:
    n, mu, sigma = cell_moments(counts, scale)
    noise = repetition_noise(n, sigma)
    P = counts.shape[0]
    S, sigma_bar, S_corr = point_estimates(mu, sigma, G, noise)
    # the corrected sigma_bar: per cell sigma / c4(n), cells with n < 2 left out (weight 0)
    included = (n >= 2).astype(np.float64)
    sig_c = sigma * inverse_c4(n)
    sigma_c = corrected_sigma_bar(sig_c.sum(axis=0), included.sum(axis=0), G)
    if persona_draws > 0:
        W = resample_weights(P, persona_draws, rng_persona)
        # One product for every per-persona quantity: exact_products scales each column on its
        # own, so the columns come out as they would from separate products. Items go in group
        # order (Gs), as the group means would put them, saving them a copy of every replicate.
        # A cell count of 2+ everywhere (a complete run) makes each draw's count of included
        # cells P, as the product would give exactly.
        Q, order = mu.shape[1], G.order
        Gs = ItemGroups(G.of_items[order], G.n)
        every = bool(included.all())
        X = np.concatenate([persona_values(mu[:, order], sigma[:, order], noise[:, order], mu.mean(axis=0)[order]),
                            sig_c[:, order], *([] if every else [included[:, order]])], axis=1)
        sums = exact_products(W, X, row_bound=P)  # each of W's rows counts P draws
        S_p, sig_p, Sc_p = from_sums(sums[:, : 4 * Q], P, Gs)
        counted = np.full((persona_draws, Q), float(P)) if every else sums[:, 5 * Q :]
        sigc_p = corrected_sigma_bar(sums[:, 4 * Q : 5 * Q], counted, Gs)
    else:
        S_p = sig_p = Sc_p = sigc_p = np.empty((0, G.width))
    acc = rerun_sums(counts, scale, mu, sigma, rerun_draws, rng_rerun)
    if acc is None:
        S_r = sig_r = Sc_r = sigc_r = np.empty((0, G.width))
    else:
        S_r, sig_r, Sc_r = rerun_replicates(acc, P, G)
        sigc_r = corrected_sigma_bar(acc[..., 4].T, included.sum(axis=0), G)
    per_item = (n < 2).sum(axis=0)  # cells left out, per item; then for all items and each group
    excluded = np.r_[per_item.sum(), np.bincount(G.of_items, weights=per_item, minlength=G.n)].astype(np.int64)
    return Estimates(S, sigma_bar, S_corr, S_p, sig_p, Sc_p, S_r, sig_r, Sc_r, sigma_c, sigc_p, sigc_r, excluded)


def bootstrap_se(replicates: np.ndarray) -> np.ndarray:
    if replicates.shape[0] < 2:
        return np.full(replicates.shape[1:], np.nan)
    return np.asarray(np.std(replicates, axis=0, ddof=1))
