"""How many personas and repetitions a study needs (`toolkit power`).

The question: with P personas and n repetitions a cell, how likely is a paired comparison to
detect a change of X% in R (or S, sigma_bar, S_corrected) at level alpha? The answer is
computed from a stored run's own cells, so it carries that model's real spread across
personas and its real repetition noise:

1. Pseudo-studies of size (P, n) are drawn under "no change": P personas drawn with
   replacement from the run's retained personas, shared by two pseudo-runs (the paired
   design), and every cell of each pseudo-run answered n times by drawing from that cell's
   recorded repetitions with replacement (integer draws only: the same on every machine).
2. The spread of the relative difference (B - A) / A over the pseudo-studies is the standard
   error, in percent, of a change at that size. Relative, because resampling a cell's n
   recorded answers understates its spread by a factor (n-1)/n and leaves a cell that always
   gave one answer constant: the level of sigma_bar (and so of R) comes out biased, but much
   of that cancels in a ratio.
3. Power = Phi(d/se - z) + Phi(-d/se - z) for a change of d percent, z = Phi^-1(1 - alpha/2):
   the normal approximation to the two-sided test (the paired permutation test and interval
   behave so; benchmarks/bench_coverage.py). The smallest detectable change at the target
   power is (z + Phi^-1(power)) * se.

Measured against the generating model (tests/test_power.py, benchmarks/bench_power.py): the
resampled SE of a relative change under no change is close to the true one (within about 7%),
but the normal formula misses how the permutation test behaves under a change, so at a
promised 0.80 an S test's true power was 0.67-0.79 and an R test's 0.82-0.94. With
``simulate`` the power is that of the test itself, on studies drawn from the run's fitted
generating model with the change planted: within 5 points of the true power in 10 of 12
designs, at most 8 points low.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import polars as pl

from ..errors import ToolkitError
from ..parallel.pool import chunks
from ..store import RunManifest, Store
from ..store.query import EVERY_RUN, Selection
from .cache import Memo
from .metrics import (
    ItemGroups,
    cell_moments,
    instrument_groups,
    inverse_c4,
    point_estimates,
    repetition_noise,
)
from .model import Effect, pair_distributions, population_truths
from .options import DEFAULT, AnalysisOptions
from .paired import METRICS, compare_pair, point_metrics
from .result import Result
from .seeds import rng_for
from .selection import retained_counts

# What a reader of the analytic power table must know, per metric (docs/statistics.md, "Power";
# benchmarks/bench_power.py): the normal formula uses the SE of a difference under no change,
# but under a change the permutation test's reference spread widens: at a promised 0.80 the
# true power of an S test was 0.67-0.79, of R 0.82-0.94. `--simulate N` runs the test itself.
CAVEATS = {
    "S": "the analytic power for S is optimistic: where it says 0.80 simulated studies reached 0.67-0.79 "
         "(benchmarks/bench_power.py); --simulate N gives the power of the test itself",
    "R": "the analytic power for R is conservative: where it says 0.80 simulated studies reached 0.82-0.94 "
         "(benchmarks/bench_power.py); --simulate N gives the power of the test itself",
}
CAVEATS["S_corrected"] = CAVEATS["S"].replace("for S ", "for S_corrected ")
CAVEATS["sigma_bar"] = CAVEATS["R"].replace("for R ", "for sigma_bar ")


def _pseudo_counts(positions: np.ndarray, cum: np.ndarray, K: int) -> np.ndarray:
    """Counts per rating of drawn repetition positions (..., n) in cells whose sorted
    repetitions put rating k at [cum[k-1], cum[k])."""
    below = (positions[..., None] < cum[..., None, :]).sum(axis=-2)  # (..., K): draws below each boundary
    return np.asarray(np.diff(below, prepend=0, axis=-1)[..., :K])


def null_spread(counts: np.ndarray, scale: np.ndarray, G: ItemGroups, personas: int, repetitions: int, sims: int,
                rng: np.random.Generator) -> np.ndarray:
    """(sims, 4, G) relative differences (B - A) / A of METRICS between two paired pseudo-runs
    of the given size."""
    P, Q, K = counts.shape
    n = counts.sum(axis=2)
    cum = np.cumsum(counts, axis=2)  # (P, Q, K): end of each rating among the sorted repetitions
    out = np.empty((sims, len(METRICS), G.width))
    for s in range(sims):
        idx = rng.integers(0, P, size=personas)
        pair = []
        for _ in range(2):
            pos = rng.integers(0, n[idx][..., None], size=(personas, Q, repetitions))
            pair.append(_pseudo_counts(pos, cum[idx], K))
        a = point_metrics(pair[0], scale, G)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[s] = (point_metrics(pair[1], scale, G) - a) / a
    return out


@dataclass(frozen=True)
class Fitted:
    """The generating model of `toolkit simulate` matched to a run by its moments: the items'
    centres (the run's item means), the personas' latent spread (S_corrected per item, their
    mean) and the within-cell spread (the c4-corrected mean cell SD). A discretised normal
    compresses spreads near the scale's ends, so the match is approximate; it is what
    ``simulate`` lets a user plant an effect in."""

    centre: np.ndarray
    spread_personas: float
    spread_within: float

    @classmethod
    def of(cls, counts: np.ndarray, scale: np.ndarray) -> Fitted:
        n, mu, sigma = cell_moments(counts, scale)
        s = np.asarray(scale, dtype=np.float64)
        centre = np.clip(mu.mean(axis=0), s[0], s[-1])
        one = ItemGroups(np.zeros(mu.shape[1], dtype=np.int64), 1)
        spread = float(point_estimates(mu, sigma, one, repetition_noise(n, sigma))[2][0])  # S_corrected
        counted = n >= 2
        within = float((sigma * inverse_c4(n))[counted].mean()) if counted.any() else 0.0
        return cls(centre, spread, within)

    def latent(self, personas: int, rng: np.random.Generator) -> np.ndarray:
        return np.asarray(self.spread_personas * rng.standard_normal((personas, len(self.centre))))


TRUTH_PERSONAS = 4000  # personas of the fixed draw the effect sizes are solved on


def _change(fitted: Fitted, effect: Effect, metric: str, n: int, z: np.ndarray, scale: np.ndarray) -> float:
    """Relative change of ``metric`` (population values at n repetitions) that ``effect`` makes."""
    row = ("S", "S_corrected", "sigma_bar").index(metric if metric != "R" else "sigma_bar")
    one = ItemGroups(np.zeros(z.shape[1], dtype=np.int64), 1)
    values = [float(population_truths(probs, n, scale, one)[row, 0])
              for probs in pair_distributions(fitted.centre, z, fitted.spread_within, effect,
                                              np.asarray(scale, dtype=np.float64))]
    ratio = values[1] / values[0]
    return 1.0 / ratio - 1.0 if metric == "R" else ratio - 1.0


def effect_for(fitted: Fitted, metric: str, delta_pct: float, n: int, scale: np.ndarray) -> Effect:
    """The effect that changes ``metric`` by ``delta_pct`` percent in the fitted model: the
    personas' spread scaled (S, S_corrected) or the within-cell spread scaled (sigma_bar, R),
    found by bisection on a fixed draw of personas."""
    z = fitted.latent(TRUTH_PERSONAS, np.random.default_rng(0))
    target = delta_pct / 100.0
    on_personas = metric in ("S", "S_corrected")
    increasing = metric != "R"  # a wider within-cell spread lowers R

    def effect(factor: float) -> Effect:
        return Effect(persona_factor=factor) if on_personas else Effect(within_factor=factor)

    def below(factor: float) -> bool:
        return (_change(fitted, effect(factor), metric, n, z, scale) < target) == increasing

    lo, hi = 0.0, 1.0
    while below(hi) and hi < 64:
        lo, hi = hi, hi * 2
    for _ in range(48):
        mid = (lo + hi) / 2
        if below(mid):
            lo = mid
        else:
            hi = mid
    return effect((lo + hi) / 2)


def simulated_rejections(fitted: Fitted, effect: Effect, scale: np.ndarray, G: ItemGroups, personas: int,
                         repetitions: int, sims: int, permutations: int, alpha: float, metric: str,
                         rng: np.random.Generator) -> int:
    """How many of ``sims`` simulated paired studies the permutation test of `compare --paired`
    rejects at ``alpha`` for ``metric``."""
    s = np.asarray(scale, dtype=np.float64)
    options = AnalysisOptions(bootstrap=0, permutations=permutations)
    k = METRICS.index(metric)
    hits = 0
    for _ in range(sims):
        probs = pair_distributions(fitted.centre, fitted.latent(personas, rng), fitted.spread_within, effect, s)
        a, b = (rng.multinomial(repetitions, p).astype(np.int64) for p in probs)
        with np.errstate(invalid="ignore", divide="ignore"):
            res = compare_pair(a, b, scale, G, options, (rng, rng), True)
        hits += int(res.p_value[k, 0] <= alpha)
    return hits


def _simulated_chunk(jobs: list[tuple[Any, ...]]) -> list[int]:
    return [simulated_rejections(*job) for job in jobs]


def power(store: Store | None = None, selection: Selection = EVERY_RUN, *, metric: str = "R",
          deltas: Sequence[float] = (10, 20, 30, 50),
          personas: Sequence[int] = (25, 50, 100, 200), repetitions: Sequence[int] = (5, 10, 20),
          alpha: float = 0.05, target: float = 0.8, sims: int = 200, simulate: int = 0,
          options: AnalysisOptions = DEFAULT) -> pl.DataFrame:
    """Power to detect each relative change in ``deltas`` (percent of the run's value) of
    ``metric`` (overall), per number of personas x repetitions, from one selected persona run.

    With ``simulate`` = N, also ``sim_power_<d>pct``: the share of N simulated paired studies
    whose permutation test rejects, each drawn from the run's fitted generating model
    (``Fitted``) with the change planted (``effect_for``), and ``sim_power_se`` (the largest
    binomial SE of those shares). The analytic column assumes the difference is normal with
    the null's SE; under a change the permutation test's reference spread widens, which the
    simulation includes (docs/statistics.md, "Power"). The table is kept in the store's results
    cache (``options.cache``; analysis/cache.py: Memo)."""
    if metric not in METRICS:
        raise ToolkitError(f"power: unknown metric {metric!r} (choose from {', '.join(METRICS)})")
    if not 0 < alpha < 1 or not 0 < target < 1 or sims < 10:
        raise ToolkitError("power: alpha and the target power must be in (0, 1), and --sims at least 10")
    if min(personas, default=0) < 2 or min(repetitions, default=0) < 2:
        raise ToolkitError("power: at least 2 personas and 2 repetitions (sigma needs two answers)")
    store = store or Store()
    all_runs = store.runs()
    runs = selection.for_modes(("persona",), "power", store, among=all_runs)
    if len(runs) != 1:
        raise ToolkitError(f"power works from one persona run; the selection has {len(runs)} "
                           "(narrow it with --model, --variant, --temperature or --run-id)")
    if simulate < 0 or (simulate and options.permutations < 1):
        raise ToolkitError("power: --simulate takes a number of studies >= 1, and the test needs permutations")
    what = ["power", runs[0].run_id, metric, list(deltas), list(personas), list(repetitions), alpha, target, sims,
            simulate, options.numbers()]
    made = partial(_power, store, all_runs, runs, metric, deltas, personas, repetitions, alpha, target, sims,
                   simulate, options)
    return Memo(store, options.cache).result(what, all_runs, lambda: Result(made())).frame


def _power(store: Store, all_runs: list[RunManifest], runs: list[RunManifest], metric: str, deltas: Sequence[float],
           personas: Sequence[int], repetitions: Sequence[int], alpha: float, target: float, sims: int, simulate: int,
           options: AnalysisOptions) -> pl.DataFrame:
    loaded = retained_counts(store, runs, all_runs, options, None)
    rc, ids = loaded[0]
    counts = rc.counts[np.isin(rc.persona_ids, ids)]
    G = instrument_groups(rc.instrument)
    k = METRICS.index(metric)
    value = float(point_metrics(counts, rc.instrument.scale, G)[k, 0])
    from ..numerics import normal_cdf_scalar as ndtr
    from ..numerics import normal_quantile_scalar as ndtri

    z = float(ndtri(1 - alpha / 2))
    sims_of: dict[tuple[int, int, float], float] = {}
    if simulate:
        fitted = Fitted.of(counts, rc.instrument.scale)
        jobs = [(fitted, effect_for(fitted, metric, d, n, rc.instrument.scale), rc.instrument.scale, G, P, n,
                 simulate, options.permutations, alpha, metric,
                 rng_for(rc.input_digest, "power-simulate", options.seed, f"{P}x{n}x{d!r}"))
                for P in personas for n in repetitions for d in deltas]
        from ..parallel import delayed

        tasks = [delayed(_simulated_chunk)(c) for c in chunks(jobs, options.jobs)]
        hits = [h for part in options.workers.run(tasks) for h in part]
        sims_of = {(job[4], job[5], d): h / simulate
                   for job, h, d in zip(jobs, hits, [d for _ in personas for _ in repetitions for d in deltas])}
    rows = []
    for P in personas:
        for n in repetitions:
            rng = rng_for(rc.input_digest, "power", options.seed, f"{P}x{n}")
            rel = null_spread(counts, rc.instrument.scale, G, P, n, sims, rng)[:, k, 0]
            se = 100 * float(np.std(rel, ddof=1))  # nan when a pseudo-run had no spread (R of sigma_bar 0)
            row = {"model": rc.manifest.model, "variant": rc.manifest.variant, "metric": metric, "value": value,
                   "personas": P, "repetitions": n, "se_pct": se, "mde_pct": (z + float(ndtri(target))) * se}
            for d in deltas:
                row[f"power_{d:g}pct"] = (float(ndtr(abs(d) / se - z) + ndtr(-abs(d) / se - z)) if se > 0
                                          else 1.0 if se == 0 else float("nan"))
            if simulate:
                shares = [sims_of[(P, n, d)] for d in deltas]
                for d, share in zip(deltas, shares):
                    row[f"sim_power_{d:g}pct"] = share
                row["sim_power_se"] = max(float(np.sqrt(p * (1 - p) / simulate)) for p in shares) if shares else 0.0
            rows.append(row)
    return pl.DataFrame(rows)
