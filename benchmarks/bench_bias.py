"""Bias of the published sigma_bar and R, and of their c4-corrected companions, against the
generating model's within-cell SD (``toolkit simulate``'s ``true_sigma_bar``); and of S and
S_corrected against the spread of the cells' true means (``true_S``).

    python benchmarks/bench_bias.py [--runs 20] [--personas 100]

Prints, per repetitions a cell and share of unparseable answers, the mean relative error over
the runs of sigma_bar, sigma_bar_corrected, R and R_corrected (R against 1 / true_sigma_bar),
S and S_corrected.
docs/statistics.md quotes its output.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from toolkit.analysis.api import analyze
from toolkit.analysis.options import AnalysisOptions
from toolkit.ingest.simulate import Spec, simulate
from toolkit.protocol.instrument import load_instrument
from toolkit.store import Store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--personas", type=int, default=100)
    args = ap.parse_args()
    inst = load_instrument()
    options = AnalysisOptions(bootstrap=0, rerun_bootstrap=0)
    t0 = time.perf_counter()
    print("n   invalid  sigma_bar  sigma_bar_corrected  R        R_corrected  S        S_corrected")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (3, 5, 10):
            for invalid in (0.0, 0.2):
                store = Store(Path(tmp) / f"n{n}-{invalid}")
                truths = {t.run_id: t for t in simulate(store, inst, runs=args.runs, seed=n, spec=Spec(
                    personas=args.personas, repetitions=n, invalid_share=invalid))}
                frame = analyze(store, options=options, corrected=True).frame
                err = dict.fromkeys(("sigma_bar", "sigma_bar_corrected", "R", "R_corrected", "S", "S_corrected"), 0.0)
                for row in frame.iter_rows(named=True):
                    true = truths[row["run_id"]].true_sigma_bar
                    for k in ("S", "S_corrected"):
                        err[k] += (row[k] / truths[row["run_id"]].true_S - 1) / len(frame)
                    for k in ("sigma_bar", "sigma_bar_corrected"):
                        err[k] += (row[k] / true - 1) / len(frame)
                    for k in ("R", "R_corrected"):
                        err[k] += (row[k] * true - 1) / len(frame)
                print(f"{n:<3d} {invalid:<8.1f} {err['sigma_bar']:+9.1%}  {err['sigma_bar_corrected']:+19.1%}  "
                      f"{err['R']:+7.1%}  {err['R_corrected']:+11.1%}  {err['S']:+7.1%}  {err['S_corrected']:+11.1%}")
    print(f"({args.runs} runs of {args.personas} personas each; {time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
