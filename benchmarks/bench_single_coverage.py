"""Coverage of the intervals `analyze` implies for one run: the value ± 1.96 × its printed SE
(S_se, sigma_bar_se, R_se, S_corrected_se and the corrected companions' SEs, each the persona
and rerun bootstraps in quadrature, as toolkit/analysis/scoring.py combines them), over a
grid of designs (issue 27: "coverage of every interval the CLI prints").

Runs are drawn from the generating model of `toolkit simulate` (run A of
``simulate.PairSpec``: the same personas, items and noise as bench_coverage.py); the truths are
bench_coverage.truth_values' (what each metric estimates: the published S, sigma_bar and R at n
repetitions, S_corrected the spread of the true cell means, the companions the population SD
and, in the "(own)" columns, what they average to at n).

    python benchmarks/bench_single_coverage.py [--runs 400] [--personas 25,50,100] [--repetitions 3,5,10]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_coverage import ITEMS, SCALE, truth_values  # the one definition of the designs' truths
from bench_coverage import NAMES as PAIRED_NAMES

from toolkit.analysis.metrics import ItemGroups, bootstrap_se, estimate
from toolkit.ingest.simulate import Effect, PairSpec, pair_counts

Z = 1.959963984540054  # the 97.5% normal quantile
NAMES = (*PAIRED_NAMES, "sigma_bar (persona SE)", "R (persona SE)")


def single(counts: np.ndarray, bootstrap: int, rerun: int, seed: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Each NAMES column's value and printed SE for one run (overall)."""
    G = ItemGroups(np.zeros(ITEMS, dtype=np.int64), 1)
    est = estimate(counts, SCALE, G, persona_draws=bootstrap, rerun_draws=rerun,
                   rng_persona=np.random.default_rng([*seed, 1]), rng_rerun=np.random.default_rng([*seed, 2]))

    def se(persona: np.ndarray | None, rerun_: np.ndarray | None) -> float:
        assert persona is not None and rerun_ is not None
        a, b = float(bootstrap_se(persona)[0]), float(bootstrap_se(rerun_)[0])
        return float(np.sqrt(a * a + b * b))

    assert est.sigma_corrected is not None
    sb, sc = float(est.sigma_bar[0]), float(est.sigma_corrected[0])
    sb_se = se(est.sigma_persona, est.sigma_rerun)
    sc_se = se(est.sigma_corrected_persona, est.sigma_corrected_rerun)
    values = [float(est.S[0]), sb, 1 / sb, float(est.S_corrected[0]), sc, 1 / sc]
    ses = [se(est.S_persona, est.S_rerun), sb_se, sb_se / (sb * sb), se(est.S_corrected_persona,
           est.S_corrected_rerun), sc_se, sc_se / (sc * sc)]
    persona = float(bootstrap_se(est.sigma_persona)[0])  # the persona bootstrap alone (sigma_bar_se_persona)
    return np.r_[values, values[4:], sb, 1 / sb], np.r_[ses, ses[4:], persona, persona / (sb * sb)]


def runs(P: int, n: int, lo: int, hi: int, bootstrap: int, rerun: int, true: np.ndarray) -> np.ndarray:
    spec = PairSpec(personas=P, items=ITEMS, repetitions=n, effect=Effect())
    out = []
    for i in range(lo, hi):
        a, _ = pair_counts(spec, SCALE, np.random.default_rng([P, n, i]))
        value, se = single(a, bootstrap, rerun, [P, n, i])
        truth = np.r_[true, true[1:3]]  # the persona-SE columns estimate sigma_bar and R
        out.append((value - Z * se <= truth) & (truth <= value + Z * se))
    return np.asarray(out, dtype=np.float64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=400)
    ap.add_argument("--personas", default="25,50,100")
    ap.add_argument("--repetitions", default="3,5,10")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--rerun-bootstrap", type=int, default=200)
    ap.add_argument("--truth-personas", type=int, default=20_000)
    ap.add_argument("--truth-sd-personas", type=int, default=2_000)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    Ps = [int(p) for p in args.personas.split(",")]
    ns = [int(n) for n in args.repetitions.split(",")]
    t0 = time.perf_counter()
    truths = dict(zip(ns, Parallel(n_jobs=args.jobs)(
        delayed(truth_values)(n, Effect(), args.truth_personas, args.truth_sd_personas) for n in ns)))
    chunk = max(1, args.runs // 4)
    tasks = [(P, n, lo, min(args.runs, lo + chunk)) for n in ns for P in Ps for lo in range(0, args.runs, chunk)]
    parts = Parallel(n_jobs=args.jobs)(delayed(runs)(P, n, lo, hi, args.bootstrap, args.rerun_bootstrap,
                                                     truths[n][0]) for P, n, lo, hi in tasks)
    results: dict[tuple[int, int], list[np.ndarray]] = {}
    for (P, n, _, _), part in zip(tasks, parts):
        results.setdefault((P, n), []).append(part)
    print(f"{args.runs} runs per design, {ITEMS} items, {args.bootstrap} persona + {args.rerun_bootstrap} rerun "
          f"draws; value ± 1.96 SE as `analyze` prints them\n")
    print("| P | n | " + " | ".join(NAMES) + " |")
    print("|---" * (2 + len(NAMES)) + "|")
    spans: dict[str, list[float]] = {m: [] for m in NAMES}
    for (P, n), got in results.items():
        share = np.concatenate(got).mean(axis=0)
        for m, c in zip(NAMES, share):
            spans[m].append(c)
        print(f"| {P} | {n} | " + " | ".join(f"{100 * c:.1f}" for c in share) + " |")
    print("\nRange over the designs (coverage %; within 95 ± 2 is the target):\n")
    for m, cs in spans.items():
        print(f"- {m}: {100 * min(cs):.1f}–{100 * max(cs):.1f}, {sum(abs(c - 0.95) > 0.02 for c in cs)} of "
              f"{len(cs)} designs outside")
    print(f"\n(total {time.perf_counter() - t0:.0f} s with --jobs {args.jobs})")


if __name__ == "__main__":
    main()
