"""Estimator check against ground truth (issue 11): over many simulated runs of one generating
model, do the bootstrap SEs match the actual spread of the estimates, and how large is the
finite-repetition bias of S?

The persona bootstrap resamples personas whose observed means and stds already carry the
repetition noise, so alone it should match the spread over runs; the published rule adds the
rerun bootstrap in quadrature, which counts that noise twice and is conservative.

Each run draws its own 100 personas (latent means) from the same model, so the spread of S
and sigma_bar over runs is what a standard error should predict. S estimates
sqrt(tau^2 + mean(sigma^2)/n) rather than tau: the persona means carry the repetition noise.

    python benchmarks/bench_estimators.py [--runs 50] [--personas 100] [--repetitions 10]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from toolkit.analysis import analyze
from toolkit.analysis.options import AnalysisOptions
from toolkit.ingest.simulate import Spec, simulate
from toolkit.protocol.instrument import load_instrument
from toolkit.store import Store


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--personas", type=int, default=100)
    ap.add_argument("--repetitions", type=int, default=10)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    store = Store(Path(tempfile.mkdtemp()) / "store")
    spec = Spec(personas=args.personas, repetitions=args.repetitions)
    t0 = time.perf_counter()
    truths = simulate(store, load_instrument(), runs=args.runs, spec=spec, seed=2026)
    df = analyze(store, options=AnalysisOptions(jobs=args.jobs)).frame  # the full default bootstrap
    took = time.perf_counter() - t0
    by_id = {t.run_id: t for t in truths}
    true_S = np.array([by_id[r].true_S for r in df["run_id"]])
    true_sigma = np.array([by_id[r].true_sigma_bar for r in df["run_id"]])
    S, sigma_bar = df["S"].to_numpy(), df["sigma_bar"].to_numpy()
    print(f"{args.runs} runs of {args.personas} personas x 30 items x {args.repetitions} repetitions "
          f"(simulated and analyzed in {took:.1f} s)")
    for name, est, col in (("S", S, "S"), ("sigma_bar", sigma_bar, "sigma_bar")):
        spread = np.std(est, ddof=1)
        print(f"  {name}: spread of the estimates over runs {spread:.5f}")
        for label, se in (("persona bootstrap", df[f"{col}_se_persona"]), ("rerun bootstrap", df[f"{col}_se_rerun"]),
                          ("combined (published rule)", df[f"{col}_se"])):
            ratio = float(np.mean(se.to_numpy())) / spread
            verdict = "within 20%" if abs(ratio - 1) <= 0.2 else "outside 20%"
            print(f"    mean SE, {label:26s} {np.mean(se.to_numpy()):.5f}  ratio {ratio:.3f} ({verdict})")
    expected = np.sqrt(true_S**2 + true_sigma**2 / args.repetitions)
    print(f"  bias of S from finite repetitions: mean(S - true S) = {np.mean(S - true_S):+.5f} "
          f"({100 * np.mean(S - true_S) / np.mean(true_S):+.2f}% of true S); "
          f"predicted by sqrt(tau^2 + sigma^2/n): {np.mean(expected - true_S):+.5f}")
    print(f"  sigma_bar: mean estimate {np.mean(sigma_bar):.5f}, mean truth {np.mean(true_sigma):.5f} "
          f"({100 * (np.mean(sigma_bar) / np.mean(true_sigma) - 1):+.2f}%)")


if __name__ == "__main__":
    main()
