"""Benchmark: the 201-point R(T)/S(T) curve with 2000-draw persona bootstrap (logit method).

    python benchmarks/bench_curves.py [--shared ../shared/datasets] [--repeat 7]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from toolkit.analysis import curves
from toolkit.analysis.options import AnalysisOptions
from toolkit.ingest.importer import import_paths
from toolkit.store import Store


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared" / "datasets"))
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    src = Path(args.shared) / "costa2025-logit" / "gemma-2-9b-it-local_logprobs.csv"
    tmp = Path(tempfile.mkdtemp())
    try:
        store = Store(tmp / "store")
        import_paths(store, [src])
        for jobs in (1, 2):
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                curves(store, points=201, options=AnalysisOptions(bootstrap=2000, jobs=jobs, backend="threading"))
                times.append(time.perf_counter() - t0)
            print(f"curves 201 T x 2000 draws, 3000 cells, --jobs {jobs}: best {min(times):.3f} s, "
                  f"median {statistics.median(times):.3f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
