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

Measured against the generating model (tests/test_power.py, and a sweep at n = 4 and 8): the
resampled SE of a relative change is within about 12% of the true one for R and sigma_bar
(slightly conservative) and about 20% below it for S and S_corrected (optimistic: plan S
studies with some margin).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from ..errors import ToolkitError
from ..store import Store
from ..store.query import EVERY_RUN, Selection
from .metrics import ItemGroups, instrument_groups
from .options import DEFAULT, AnalysisOptions
from .paired import METRICS, point_metrics
from .seeds import rng_for
from .selection import retained_counts

# What a reader of the power table must know, per metric (docs/statistics.md, "Power"): the
# resampled SE of a change in S runs about 20% below the true one, so the power it promises is
# optimistic (simulated: about 0.68-0.69 where it says 0.80); R and sigma_bar err on the safe side.
CAVEATS = {
    "S": "power for S is optimistic: its resampled SE runs about 20% below the true one (simulated power "
         "about 0.68 where this table says 0.80); plan with a margin, or check the design with "
         "`toolkit simulate --paired` (docs/statistics.md)",
}
CAVEATS["S_corrected"] = CAVEATS["S"].replace("for S ", "for S_corrected ")


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


def power(store: Store | None = None, selection: Selection = EVERY_RUN, *, metric: str = "R",
          deltas: Sequence[float] = (10, 20, 30, 50),
          personas: Sequence[int] = (25, 50, 100, 200), repetitions: Sequence[int] = (5, 10, 20),
          alpha: float = 0.05, target: float = 0.8, sims: int = 200,
          options: AnalysisOptions = DEFAULT) -> pl.DataFrame:
    """Power to detect each relative change in ``deltas`` (percent of the run's value) of
    ``metric`` (overall), per number of personas x repetitions, from one selected persona run."""
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
    loaded = retained_counts(store, runs, all_runs, options, None)
    rc, ids = loaded[0]
    counts = rc.counts[np.isin(rc.persona_ids, ids)]
    G = instrument_groups(rc.instrument)
    k = METRICS.index(metric)
    value = float(point_metrics(counts, rc.instrument.scale, G)[k, 0])
    from ..numerics import normal_cdf_scalar as ndtr
    from ..numerics import normal_quantile_scalar as ndtri

    z = float(ndtri(1 - alpha / 2))
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
            rows.append(row)
    return pl.DataFrame(rows)
