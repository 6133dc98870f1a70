"""Benchmark: import the 12 published persona runs, then the full analysis.

Full analysis = 12 runs x (overall + every group), 2000 persona + 400 rerun bootstrap draws.
Prints wall times (best and median of --repeat) for --jobs 1 and --jobs 2 (threading backend).

    python benchmarks/bench_analyze.py [--shared ../shared/datasets] [--repeat 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from toolkit.analysis import analyze
from toolkit.analysis.options import AnalysisOptions
from toolkit.ingest.importer import import_paths
from toolkit.store import Store


def timed(fn, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared" / "datasets"))
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    runs = Path(args.shared) / "costa2026-em" / "runs"
    tmp = Path(tempfile.mkdtemp())
    try:
        def do_import():
            shutil.rmtree(tmp / "store", ignore_errors=True)
            import_paths(Store(tmp / "store"), [runs], temperature=0.1)

        best, med = timed(do_import, args.repeat)
        print(f"import 12 persona CSVs (360k rows): best {best:.3f} s, median {med:.3f} s")
        store = Store(tmp / "store")
        for jobs in (1, 2):
            best, med = timed(lambda j=jobs: analyze(store, by_group=True,
                                                          options=AnalysisOptions(jobs=j, backend="threading")).frame,
                              args.repeat)
            print(f"analyze 12 runs x 6 groups, 2000+400 draws, --jobs {jobs}: best {best:.3f} s, median {med:.3f} s")
        for jobs in (1, 2):
            t0 = time.perf_counter()
            do_import()
            analyze(Store(tmp / "store"), by_group=True, options=AnalysisOptions(jobs=jobs, backend="threading"))
            print(f"import + analyze, --jobs {jobs}: {time.perf_counter() - t0:.3f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
