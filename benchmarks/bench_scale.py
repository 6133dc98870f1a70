"""Benchmark: analysis at scale on simulated runs (100 personas x 30 items x 10 repetitions).

Times `toolkit analyze --by group` with the full default bootstrap (2000 + 400 draws) as a
user runs it (a cold CLI process, wall time and peak RSS from /usr/bin/time semantics via
resource), for 10 / 100 / N runs and --jobs 1 / 2; one run with 100 repetitions per cell;
one run with 2,000 personas; and cold `toolkit --help` / `--version`.

    python benchmarks/bench_scale.py [--runs 1000] [--store DIR]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one cold CLI process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode:
        raise SystemExit(res.stderr)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024


def simulate(store: Path, runs: int, *extra: str) -> None:
    have = len(list((store / "runs").glob("*.json"))) if (store / "runs").exists() else 0
    if have < runs:
        cli("simulate", "--runs", str(runs), "--store", str(store), *extra)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--store", default=None, help="keep the simulated store here (reused when present)")
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


if __name__ == "__main__":
    main()
