"""Coverage of every interval `compare --paired --corrected` prints, and the size and power of
its permutation test, over a grid of designs (issue 27).

Pairs of runs are drawn from the generating model of `toolkit simulate --paired`
(``simulate.PairSpec`` and ``pair_distributions``, the same definition): each pair draws its
own personas, who answer both runs; run B carries one of four effects (none, a shift of every
latent mean, the persona spread x1.3, the within-cell SD x1.3). For each design P personas x
n repetitions x effect, the table gives the share of pairs whose 95% BCa interval (the
default) covers the true difference of each metric, and the share the permutation test
rejects at 0.05 (under "no change": the test's size).

The truth is the generating model's (one large draw of personas, shared by A and B, so "no
change" is exactly 0), for what each metric estimates:

- S, sigma_bar and R, the published metrics: their expected values with n repetitions a cell
  (as ``simulate.truth_metrics``: S from the spread of the cells' sample means, sigma_bar the
  mean expected ddof=1 sample SD, exact over every outcome of n answers);
- S_corrected: the spread of the cells' true means;
- sigma_bar_corrected and R_corrected: the cells' population SD (and its inverse). c4(n) is
  exact for normal answers only, so on a 6-point scale a little bias remains (docs/
  statistics.md); the two ``(own)`` columns measure the same intervals against what the
  companions average to at n (E[s] / c4(n)), which separates that bias from calibration.

    python benchmarks/bench_coverage.py [--pairs 400] [--personas 25,50,100] [--repetitions 3,5,10]
                                        [--null-only]

Prints a markdown table and the wall time; --jobs spreads the pairs over processes (results do
not depend on it: every pair's seeds come from its design and index).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from joblib import Parallel, delayed

from toolkit.analysis.metrics import ItemGroups, c4
from toolkit.analysis.model import population_truths
from toolkit.analysis.options import AnalysisOptions
from toolkit.analysis.paired import CORRECTED, METRICS, compare_pair
from toolkit.ingest.simulate import Effect, PairSpec, expected_sd, pair_counts

SCALE = np.arange(6)
ITEMS = 30
EFFECTS = {"no change": Effect(), "shift +0.3": Effect(shift=0.3), "persona spread x1.3": Effect(persona_factor=1.3),
           "within-cell SD x1.3": Effect(within_factor=1.3)}
NAMES = METRICS + CORRECTED + tuple(f"{m} (own)" for m in CORRECTED)


def truth(n: int, effect: Effect, personas: int, sd_personas: int) -> np.ndarray:
    """True B - A of every column of NAMES (overall), for n repetitions a cell."""
    values = truth_values(n, effect, personas, sd_personas)
    return values[1] - values[0]


def truth_values(n: int, effect: Effect, personas: int, sd_personas: int) -> np.ndarray:
    """The true value of every column of NAMES (overall) in run A and in run B: (2, len(NAMES))."""
    spec = PairSpec(items=ITEMS, repetitions=n, effect=effect)
    scale = SCALE.astype(np.float64)
    values = []
    one = ItemGroups(np.zeros(ITEMS, dtype=np.int64), 1)
    for probs in spec.distributions(scale, np.random.default_rng(12345), personas):
        S, S_corr, _ = population_truths(probs, n, scale, one)[:, 0]
        few = probs[:sd_personas]  # the SD truths average 30 x sd_personas cells: plenty, and the exact E[s] is costly
        population_sd = float(population_truths(few, n, scale, one)[2, 0])
        sample_sd = float(expected_sd(few, n, SCALE).mean())
        own = sample_sd / c4(n)
        values.append([S, sample_sd, 1 / sample_sd, S_corr, population_sd, 1 / population_sd, own, 1 / own])
    return np.asarray(values)


def pairs(P: int, n: int, effect: Effect, start: int, stop: int, options: AnalysisOptions, seed: int,
          true: np.ndarray) -> np.ndarray:
    """Per pair: (covered per NAMES column, rejected at 0.05 per metric)."""
    spec = PairSpec(personas=P, items=ITEMS, repetitions=n, effect=effect)
    G = ItemGroups(np.zeros(ITEMS, dtype=np.int64), 1)
    out = []
    for i in range(start, stop):
        a, b = pair_counts(spec, SCALE, np.random.default_rng([seed, i]))
        res = compare_pair(a, b, SCALE, G, options, (np.random.default_rng([seed, i, 1]),
                                                     np.random.default_rng([seed, i, 2])), True, corrected=True)
        low, high = res.ci_low[:, 0], res.ci_high[:, 0]
        low, high = np.r_[low, low[4:]], np.r_[high, high[4:]]  # the companions once more, against "own"
        covered = (low <= true) & (true <= high)
        out.append(np.r_[covered, res.p_value[:, 0] <= 0.05])
    return np.asarray(out, dtype=np.float64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=400)
    ap.add_argument("--personas", default="25,50,100")
    ap.add_argument("--repetitions", default="3,5,10")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--permutations", type=int, default=1000)
    ap.add_argument("--truth-personas", type=int, default=20_000)
    ap.add_argument("--truth-sd-personas", type=int, default=2_000)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--null-only", action="store_true",
                    help="only the 'no change' designs: the test's size (and null coverage) with more pairs")
    args = ap.parse_args()
    options = AnalysisOptions(bootstrap=args.bootstrap, permutations=args.permutations)
    effects = ["no change"] if args.null_only else list(EFFECTS)
    Ps = [int(p) for p in args.personas.split(",")]
    ns = [int(n) for n in args.repetitions.split(",")]
    t0 = time.perf_counter()
    designs = [(P, n, name) for n in ns for name in effects for P in Ps]
    truths = dict(zip([(n, name) for n in ns for name in effects], Parallel(n_jobs=args.jobs)(
        delayed(truth)(n, EFFECTS[name], args.truth_personas, args.truth_sd_personas) for n in ns for name in effects)))
    t_truth = time.perf_counter() - t0
    chunk = max(1, args.pairs // 4)
    tasks = [(d, lo, min(args.pairs, lo + chunk)) for d in designs for lo in range(0, args.pairs, chunk)]
    parts = Parallel(n_jobs=args.jobs)(
        delayed(pairs)(P, n, EFFECTS[name], lo, hi, options, 1_000 * P + 10 * n + list(EFFECTS).index(name),
                       truths[(n, name)]) for (P, n, name), lo, hi in tasks)
    results: dict[tuple[int, int, str], list[np.ndarray]] = {d: [] for d in designs}
    for ((d, _, _), part) in zip(tasks, parts):
        results[d].append(part)
    print(f"{args.pairs} pairs per design, {ITEMS} items, {args.bootstrap} bootstrap draws, {args.permutations} "
          f"permutations; 95% BCa intervals (expanded for P), permutation test at 0.05; truth over "
          f"{args.truth_personas} personas ({args.truth_sd_personas} for the SD truths)\n")
    cols = " | ".join(NAMES)
    print(f"| P | n | effect | {cols} | rejected at 0.05: " + ", ".join(METRICS + CORRECTED) + " |")
    print("|---" * (4 + len(NAMES)) + "|")
    worst: dict[str, list[float]] = {m: [] for m in NAMES}
    sizes = []
    for d in designs:
        share = np.concatenate(results[d]).mean(axis=0)
        cover, reject = share[: len(NAMES)], share[len(NAMES):]
        for m, c in zip(NAMES, cover):
            worst[m].append(c)
        if d[2] == "no change":
            sizes.extend(reject.tolist())
        print(f"| {d[0]} | {d[1]} | {d[2]} | " + " | ".join(f"{100 * c:.1f}" for c in cover) + " | "
              + " / ".join(f"{100 * r:.1f}" for r in reject) + " |")
    print("\nRange over the designs (coverage %; within 95 ± 2 is the target):\n")
    for m, cs in worst.items():
        outside = sum(abs(c - 0.95) > 0.02 for c in cs)
        print(f"- {m}: {100 * min(cs):.1f}–{100 * max(cs):.1f}, {outside} of {len(cs)} designs outside")
    print(f"- permutation size under no change: {100 * min(sizes):.1f}–{100 * max(sizes):.1f}% "
          f"({sum(abs(s - 0.05) > 0.015 for s in sizes)} of {len(sizes)} outside 5 ± 1.5)")
    print(f"\n(truths {t_truth:.0f} s; total {time.perf_counter() - t0:.0f} s with --jobs {args.jobs})")


if __name__ == "__main__":
    main()
