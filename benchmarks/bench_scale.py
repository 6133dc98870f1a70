"""Benchmark: analysis at scale on simulated runs (100 personas x 30 items x 10 repetitions).

Times `toolkit analyze --by group` with the full default bootstrap (2000 + 400 draws) as a
user runs it: a cold CLI process, wall time, and memory of its whole process tree (the CLI,
the fork server and the workers it forks), sampled from /proc every 50 ms: the peak RSS of the
largest process and of the tree's sum (shared pages counted in each process, so the sum is an
upper bound). For 10 / 100 / N runs and --jobs 1 / 2; then --jobs 2 against --jobs 1 on 100
runs in alternating pairs (this machine's speed drifts; the median ratio is the figure), cold
and in-process (a warm interpreter, first and second call); one run with 100 repetitions per
cell; one run with 2,000 personas; one `import` call of N files in the published CSV format
(synthetic ratings, written by this script); and cold `toolkit --help` / `--version`.

    python benchmarks/bench_scale.py [--runs 1000] [--store DIR] [--pairs 5] [--skip-import]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, watch: bool = True) -> tuple[float, float, float]:
    """Wall seconds of one cold CLI process, and the peak RSS (MB) of the largest process of
    its tree and of the tree's sum (0 without ``watch``: sampling /proc costs CPU the timed
    process would otherwise have)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    largest = total = 0.0
    while watch and proc.poll() is None:
        sizes = tree_rss(proc.pid)
        largest, total = max(largest, max(sizes, default=0.0)), max(total, sum(sizes))
        time.sleep(0.05)
    proc.wait()
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode:
        raise SystemExit(err)
    return wall, largest, total


def tree_rss(root: int) -> list[float]:
    """RSS (MB) of ``root`` and every process descended from it (Linux /proc)."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, grown = {root}, True
    while grown:
        more = {pid for pid, pp in parent.items() if pp in tree} - tree
        tree |= more
        grown = bool(more)
    out = []
    for pid in tree:
        try:
            line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS:"))
            out.append(int(line.split()[1]) / 1024)
        except (OSError, StopIteration):
            continue
    return out


def in_process(store: Path) -> str:
    """--jobs 1 and 2 in one warm interpreter: the first call (pool start included) and the
    second, for the fork server and loky."""
    code = f"""
import time
from toolkit.analysis import analyze
from toolkit.analysis.options import AnalysisOptions
from toolkit.store import Store
def main():
    store, out = Store({str(store)!r}), []
    for jobs, backend in ((1, "loky"), (2, "forkserver"), (2, "loky")):
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            analyze(store, by_group=True, options=AnalysisOptions(jobs=jobs, backend=backend))
            times.append(time.perf_counter() - t0)
        name = f"jobs {{jobs}} {{backend}}" if jobs > 1 else "jobs 1"
        out.append(f"{{name}}: first {{times[0]:.2f}} s, second {{times[1]:.2f}} s")
    print("; ".join(out))
if __name__ == "__main__":
    main()
"""
    script = Path(tempfile.mkdtemp()) / "in_process.py"
    script.write_text(code)
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True).stdout.strip()


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
    ap.add_argument("--pairs", type=int, default=5, help="alternating --jobs 1 / --jobs 2 pairs on 100 runs")
    args = ap.parse_args()
    base = Path(args.store) if args.store else Path(tempfile.mkdtemp())
    for what in ("--help", "--version"):
        best = min(cli(what, watch=False)[0] for _ in range(5))
        print(f"cold toolkit {what}: {best:.3f} s")
    sizes = [n for n in (10, 100, args.runs) if n <= args.runs]
    for n in sorted(set(sizes)):
        store = base / f"runs{n}"
        t0 = time.perf_counter()
        simulate(store, n)
        print(f"{n} runs simulated in {time.perf_counter() - t0:.1f} s")
        for jobs in (1, 2):
            wall, largest, total = cli("analyze", "--by", "group", "--jobs", str(jobs), "--format", "csv",
                                       "--store", str(store))
            print(f"analyze {n} runs, --jobs {jobs}: {wall:.2f} s wall, peak RSS {largest:.0f} MB largest process, "
                  f"{total:.0f} MB whole tree")
    if args.pairs and 100 <= args.runs:
        store = base / "runs100"
        pairs = []
        for _ in range(args.pairs):
            one, two = (cli("analyze", "--by", "group", "--jobs", j, "--format", "csv", "--store", str(store),
                            watch=False)[0] for j in ("1", "2"))
            pairs.append((one, two))
        ratios = sorted(a / b for a, b in pairs)
        print("--jobs 1 / --jobs 2 on 100 runs, cold CLI: " + ", ".join(f"{a:.2f}/{b:.2f}" for a, b in pairs)
              + f" s; ratio median {statistics.median(ratios):.2f} (range {ratios[0]:.2f}-{ratios[-1]:.2f})")
        print(f"in-process on 100 runs: {in_process(store)}")
    for label, extra in (("100 repetitions", ["--repetitions", "100"]), ("2000 personas", ["--personas", "2000"])):
        store = base / label.replace(" ", "-")
        simulate(store, 1, *extra)
        wall, largest, _ = cli("analyze", "--by", "group", "--format", "csv", "--store", str(store))
        print(f"analyze one run with {label}: {wall:.2f} s wall, peak RSS {largest:.0f} MB")
    if not args.skip_import:
        csvs = base / f"csv{args.runs}"
        write_published_csvs(csvs, args.runs)
        target = Path(tempfile.mkdtemp()) / "store"
        wall, largest, total = cli("import", str(csvs), "--variant", "base", "--store", str(target))
        print(f"import {args.runs} published-format CSV files: {wall:.1f} s wall, peak RSS {largest:.0f} MB largest "
              f"process, {total:.0f} MB whole tree")


if __name__ == "__main__":
    main()
