"""Benchmark: analysis at scale on simulated runs (100 personas x 30 items x 10 repetitions).

Times `toolkit analyze --by group` with the full default bootstrap (2000 + 400 draws) as a
user runs it (a cold CLI process; wall time, and the peak RSS of its largest process, workers
included, from wait4), for 10 / 100 / N runs and --jobs 1 / 2; one run with 100 repetitions
per cell; one run with 2,000 personas; one `import` call of N files in the published CSV format
(synthetic ratings, written by this script); and cold `toolkit --help` / `--version`.

    python benchmarks/bench_scale.py [--runs 1000] [--store DIR] [--skip-import]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one cold CLI process and the workers it waited for."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(err)
    return wall, usage.ru_maxrss / 1024


def simulate(store: Path, runs: int, *extra: str) -> None:
    have = len(list((store / "runs").glob("*.json"))) if (store / "runs").exists() else 0
    if have < runs:
        cli("simulate", "--runs", str(runs), "--store", str(store), *extra)


def write_published_csvs(folder: Path, files: int, seed: int = 0) -> None:
    """Synthetic runs in the published persona CSV layout (100 personas x 30 items x 10
    repetitions, 1% unparseable), one file per model name; reused when already there."""
    import numpy as np
    import polars as pl

    folder.mkdir(parents=True, exist_ok=True)
    p, q, r = np.meshgrid(np.arange(100), np.arange(1, 31), np.arange(1, 11), indexing="ij")
    for i in range(files):
        path = folder / f"sim-model-{i:04d}_temp01.csv"
        if path.exists():
            continue
        rng = np.random.default_rng([seed, i])
        rating = np.clip(np.rint(rng.normal(2.5, 1.2, p.size)), 0, 5).astype(int)
        rating[rng.random(p.size) < 0.01] = -1
        pl.DataFrame({
            "persona_id": p.ravel(), "question_id": q.ravel(), "run_index": r.ravel(), "rating": rating,
            "failures": np.zeros(p.size, dtype=int),
            "response": [f"Rating: {v}" if v >= 0 else "I cannot answer" for v in rating.tolist()],
            "collected_at": "2026-01-01T00:00:00.000000",
        }).write_csv(path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--store", default=None, help="keep the simulated store here (reused when present)")
    ap.add_argument("--skip-import", action="store_true", help="skip the CSV import benchmark")
    args = ap.parse_args()
    base = Path(args.store) if args.store else Path(tempfile.mkdtemp())
    for what in ("--help", "--version"):
        best = min(cli(what)[0] for _ in range(5))
        print(f"cold toolkit {what}: {best:.3f} s")
    sizes = [n for n in (10, 100, args.runs) if n <= args.runs]
    for n in sorted(set(sizes)):
        store = base / f"runs{n}"
        t0 = time.perf_counter()
        simulate(store, n)
        print(f"{n} runs simulated in {time.perf_counter() - t0:.1f} s")
        for jobs in (1, 2):
            wall, rss = cli("analyze", "--by", "group", "--jobs", str(jobs), "--format", "csv", "--store", str(store))
            print(f"analyze {n} runs, --jobs {jobs}: {wall:.2f} s wall, peak RSS {rss:.0f} MB")
    for label, extra in (("100 repetitions", ["--repetitions", "100"]), ("2000 personas", ["--personas", "2000"])):
        store = base / label.replace(" ", "-")
        simulate(store, 1, *extra)
        wall, rss = cli("analyze", "--by", "group", "--format", "csv", "--store", str(store))
        print(f"analyze one run with {label}: {wall:.2f} s wall, peak RSS {rss:.0f} MB")
    if not args.skip_import:
        csvs = base / f"csv{args.runs}"
        write_published_csvs(csvs, args.runs)
        target = Path(tempfile.mkdtemp()) / "store"
        wall, rss = cli("import", str(csvs), "--variant", "base", "--store", str(target))
        print(f"import {args.runs} published-format CSV files: {wall:.1f} s wall, peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
