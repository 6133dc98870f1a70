"""Coverage of the paired intervals and size of the permutation test against ground truth
(issue 13, item 7).

Pairs of runs are drawn from toolkit.ingest.simulate's PairSpec: each pair draws its own personas, and
both runs of a pair are answered by those personas (run B's cells: latent means moved by
--shift, within-cell spread times --within-factor). The truth is the generating model's value
(simulate.pair_truth: exact expected sample sds over 20,000 personas). For each scenario the
table gives, per metric, the share of pairs whose interval covers the true difference and the
share the permutation test rejects at 0.05; for comparison, the coverage of the published
rule applied to two runs (difference +- z * hypot of each run's persona+rerun SE).

    python benchmarks/bench_coverage.py [--pairs 1000] [--personas 100] [--items 30] [--repetitions 10]

Prints a markdown table; --jobs spreads the pairs over processes (results do not depend on it).
"""

from __future__ import annotations

import argparse
import time
from itertools import pairwise

import numpy as np
from joblib import Parallel, delayed

from toolkit.analysis.metrics import ItemGroups, bootstrap_se, estimate
from toolkit.analysis.options import AnalysisOptions
from toolkit.analysis.paired import METRICS, compare_pair
from toolkit.ingest.simulate import PairSpec, pair_counts, pair_truth

SCALE = np.arange(6)


def _published_rule(a: np.ndarray, b: np.ndarray, G: ItemGroups, level: float, rng: np.random.Generator):
    """Interval of B - A from each run's own SEs (persona and rerun bootstraps in quadrature)."""
    from scipy.special import ndtri  # imported here: a ufunc imported into __main__ does not pickle to workers

    z = ndtri((1 + level) / 2)
    out = []
    for_est = [estimate(x, SCALE, G, persona_draws=2000, rerun_draws=400, rng_persona=rng, rng_rerun=rng)
               for x in (a, b)]
    for name in ("S", "sigma"):
        ses = [np.hypot(bootstrap_se(getattr(e, f"{name}_persona")), bootstrap_se(getattr(e, f"{name}_rerun")))
               for e in for_est]
        vals = [e.S if name == "S" else e.sigma_bar for e in for_est]
        d, se = vals[1] - vals[0], np.hypot(*ses)
        out.append((d - z * se, d + z * se))
    (s_lo, s_hi), (g_lo, g_hi) = out
    sig = [e.sigma_bar for e in for_est]
    sig_se = [np.hypot(bootstrap_se(e.sigma_persona), bootstrap_se(e.sigma_rerun)) for e in for_est]
    r = [1 / s for s in sig]
    r_se = np.hypot(*[se / s**2 for se, s in zip(sig_se, sig)])
    d_r = r[1] - r[0]
    return {"S": (s_lo, s_hi), "sigma_bar": (g_lo, g_hi), "R": (d_r - z * r_se, d_r + z * r_se)}


def _pairs(spec: PairSpec, start: int, stop: int, options: AnalysisOptions, truth: np.ndarray, seed: int,
           published: bool) -> np.ndarray:
    """Per pair: covered (bca, percentile, published rule) and rejected, per metric (overall group)."""
    G = ItemGroups(np.zeros(spec.items, dtype=np.int64), 1)
    rows = []
    for i in range(start, stop):
        rng = np.random.default_rng([seed, i])
        a, b = pair_counts(spec, SCALE, rng)
        row = []
        for method in ("bca", "percentile"):
            res = compare_pair(a, b, SCALE, G, options.but(ci_method=method),
                               (np.random.default_rng([seed, i, 1]), np.random.default_rng([seed, i, 2])), True)
            row.append((res.ci_low[:, 0] <= truth) & (truth <= res.ci_high[:, 0]))
        rej = res.p_value[:, 0] <= 0.05
        pub = np.full(len(METRICS), np.nan)
        if published:
            intervals = _published_rule(a, b, G, options.ci_level, np.random.default_rng([seed, i, 3]))
            for k, m in enumerate(METRICS):
                if m in intervals:
                    lo, hi = intervals[m]
                    pub[k] = float(lo[0] <= truth[k] <= hi[0])
        rows.append(np.stack([row[0], row[1], pub, rej]))
    return np.array(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--personas", type=int, default=100)
    ap.add_argument("--items", type=int, default=30)
    ap.add_argument("--repetitions", type=int, default=10)
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--permutations", type=int, default=2000)
    ap.add_argument("--within-factor", type=float, default=1.3, help="Scenario 2: within-cell spread of run B.")
    ap.add_argument("--shift", type=float, default=0.0, help="Scenario 2: latent shift of run B.")
    ap.add_argument("--no-published", action="store_true", help="Skip the published-rule column (faster).")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    options = AnalysisOptions(bootstrap=args.bootstrap, permutations=args.permutations)
    base = dict(personas=args.personas, items=args.items, repetitions=args.repetitions)
    scenarios = [("no change", PairSpec(**base)),
                 (f"within x{args.within_factor}, shift {args.shift}",
                  PairSpec(**base, within_factor=args.within_factor, shift=args.shift))]
    print(f"{args.pairs} pairs per scenario, {args.personas} personas x {args.items} items x {args.repetitions} "
          f"repetitions, {args.bootstrap} bootstrap draws, {args.permutations} permutations, 95% intervals\n")
    print("| scenario | metric | true delta | BCa coverage | percentile coverage | published-rule coverage "
          "| rejected at 0.05 |")
    print("|---|---|---|---|---|---|---|")
    for s, (name, spec) in enumerate(scenarios):
        t0 = time.perf_counter()
        truth = pair_truth(spec, SCALE, np.zeros(spec.items, dtype=np.int64), 1, seed=10_000 + s)[:, 0]
        bounds = np.linspace(0, args.pairs, 4 * args.jobs + 1).astype(int)
        parts = Parallel(n_jobs=args.jobs)(delayed(_pairs)(spec, lo, hi, options, truth, s, not args.no_published)
                                           for lo, hi in pairwise(bounds.tolist()))
        res = np.concatenate(parts)  # (pairs, 4, metrics)
        with np.errstate(invalid="ignore"):
            share = np.nanmean(res, axis=0)
        for k, metric in enumerate(METRICS):
            pub = "—" if np.isnan(res[:, 2, k]).all() else f"{100 * share[2, k]:.1f}%"
            print(f"| {name} | {metric} | {truth[k]:+.4f} | {100 * share[0, k]:.1f}% | {100 * share[1, k]:.1f}% | "
                  f"{pub} | {100 * share[3, k]:.1f}% |")
        print(f"<!-- {name}: {time.perf_counter() - t0:.0f} s -->")


if __name__ == "__main__":
    main()
