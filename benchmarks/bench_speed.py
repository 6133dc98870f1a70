"""Benchmark: the toolkit against the authors' reference pipeline, and the results cache.

Times, in one run of this script, on the 12 persona runs of arXiv 2605.12850 (overall and per
foundation, 2,000 persona + 400 rerun draws):

- the reference pipeline (``analysis/compute_metrics.py`` of llm-persona-moral-metrics, a
  pandas script), when ``--reference`` names a checkout of it (it is public; this script never
  fetches or copies it: clone it yourself). It is given the 12 runs as ``<model>-<variant>_temp01.csv``
  links in one folder and a fresh summary cache each time, so each run of it is cold;
  its logit-curve script when ``--reference-curves CMD`` gives the command line to time;
  without them, the reference times measured in issue 30 are used and labelled as such;
- `toolkit analyze --by group` as a cold CLI process with an empty results cache, and again
  (a cache hit), as a process and in-process;
- `toolkit curves` (201 temperatures, gemma-2-9b logprobs), cold;
- 1,000 simulated runs x 30,000 rows, --jobs 2: empty cache (the cache written), without the
  cache (--no-cache) and every run a hit, each the median of --repeat cold processes timed
  unwatched; then one run watched for the peak memory of the whole process tree;
- --jobs 2 against --jobs 1 on 100 runs (--no-cache, alternating pairs, median ratio);
- `toolkit report` of the EM store (12 persona + 12 self runs) twice in a row.

    python benchmarks/bench_speed.py [--reference DIR] [--reference-curves CMD] [--store DIR]
                                     [--shared ../shared/datasets] [--repeat 3] [--runs 1000]
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import cli, simulate

from toolkit.analysis import kernels

ROOT = Path(__file__).resolve().parents[1]
ISSUE_REFERENCE = {"analyze": 11.2, "curves": 35.0}  # seconds, measured in issue 30 on this machine type


def clear_cache(store: Path) -> None:
    shutil.rmtree(store / "cache", ignore_errors=True)


def median_wall(make: list[str], repeat: int, before: object = None) -> float:
    times = []
    for _ in range(repeat):
        if callable(before):
            before()
        times.append(cli(*make, watch=False)[0])
    return statistics.median(times)


def reference_analyze(repo: Path, runs: Path, repeat: int, python: str) -> float:
    """compute_metrics.py on the 12 runs, a fresh summary cache each time (cold)."""
    work = Path(tempfile.mkdtemp())
    data = work / "data"
    data.mkdir()
    for path in sorted(runs.glob("*/*_temp*.csv")):
        model, temp = path.stem.rsplit("_temp", 1)
        (data / f"{model}-{path.parent.name}_temp{temp}.csv").symlink_to(path.resolve())
    times = []
    for i in range(repeat):
        out = work / f"out{i}"
        t0 = time.perf_counter()
        subprocess.run([python, str(repo / "analysis" / "compute_metrics.py"), "--data-dir", str(data),
                        "--summary-cache-dir", str(out / "summary"), "--output", str(out / "metrics.csv"),
                        "--foundation-output", str(out / "foundations.csv")], check=True, cwd=repo,
                       stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    shutil.rmtree(work, ignore_errors=True)
    return statistics.median(times)


def reference_command(command: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(shlex.split(command), check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def in_process_hit(store: Path) -> float:
    """The second `analyze` call of a warm interpreter (its first fills or reads the cache)."""
    code = (
        "import time\nfrom toolkit.analysis import analyze\nfrom toolkit.store import Store\n"
        f"s = Store({str(store)!r})\nanalyze(s, by_group=True)\nbest = 1e9\n"
        "for _ in range(5):\n    t0 = time.perf_counter(); analyze(s, by_group=True); "
        "best = min(best, time.perf_counter() - t0)\nprint(best)\n"
    )
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def ratio_line(what: str, reference: float, ours: float, goal: float, measured: bool) -> str:
    where = "measured here" if measured else "issue 30's figure, not measured here"
    ratio = reference / ours
    return (f"{what}: reference {reference:.2f} s ({where}), toolkit {ours:.3f} s, {ratio:.0f}x "
            f"(goal >= {goal:g}x: {'met' if ratio >= goal else 'NOT met'})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "datasets"))
    ap.add_argument("--reference", default=None, help="checkout of llm-persona-moral-metrics")
    ap.add_argument("--reference-python", default=sys.executable, help="python with pandas for the reference")
    ap.add_argument("--reference-curves", default=None, help="command line of the reference curve script")
    ap.add_argument("--store", default=None, help="keep the simulated stores here (reused when present)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--pairs", type=int, default=3)
    args = ap.parse_args()
    # An installed toolkit starts from compiled bytecode (pip compiles it; an editable install
    # writes it on first import). Where PYTHONDONTWRITEBYTECODE is set, every start would
    # compile the sources again (~0.05 s), so compile them once here, as an install would.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "toolkit"), str(ROOT / "cli.py")],
                   check=True, stdout=subprocess.DEVNULL)
    print(f"compiled kernels (numba, the [fast] extra, for {kernels.MIN_RUNS}+ runs a process): "
          + ("installed" if kernels.available() else "NOT installed: the numpy path is timed"))
    shared = Path(args.shared)
    base = Path(args.store) if args.store else Path(tempfile.mkdtemp())
    em = base / "em"
    if not (em / "runs").is_dir():
        cli("import", str(shared / "costa2026-em" / "runs"), str(shared / "costa2026-em" / "self"),
            "--temperature", "0.1", "--store", str(em), watch=False)
    logit = base / "logit"
    if not (logit / "runs").is_dir():
        cli("import", str(shared / "costa2025-logit" / "gemma-2-9b-it-local_logprobs.csv"), "--store", str(logit),
            watch=False)

    ref_analyze = (reference_analyze(Path(args.reference), shared / "costa2026-em" / "runs", args.repeat,
                                     args.reference_python) if args.reference else ISSUE_REFERENCE["analyze"])
    ref_curves = (reference_command(args.reference_curves, args.repeat) if args.reference_curves
                  else ISSUE_REFERENCE["curves"])
    analyze = ["analyze", "--by", "group", "--format", "csv", "--store", str(em)]
    cold = median_wall(analyze, args.repeat, before=lambda: clear_cache(em))
    hit = median_wall(analyze, args.repeat)
    warm = in_process_hit(em)
    curves = median_wall(["curves", "--points", "201", "--format", "csv", "--store", str(logit)], args.repeat,
                         before=lambda: clear_cache(logit))  # cold: curves are cached too
    print(ratio_line("analyze --by group, cold CLI, empty cache", ref_analyze, cold, 30, bool(args.reference)))
    print(ratio_line("analyze --by group, repeated (cache hit), whole CLI", ref_analyze, hit, 100,
                     bool(args.reference)))
    print(ratio_line("analyze --by group, repeated (cache hit), in-process", ref_analyze, warm, 100,
                     bool(args.reference)))
    print(ratio_line("curves, 201 temperatures, cold CLI", ref_curves, curves, 60, bool(args.reference_curves)))

    many = base / f"runs{args.runs}"
    simulate(many, args.runs)
    # Times without watching memory (sampling /proc every 50 ms takes CPU from the workers on a
    # 2-core machine), each the median of --repeat cold processes; then one watched run for memory.
    big = ["analyze", "--by", "group", "--jobs", "2", "--format", "csv", "--store", str(many)]
    cold_big = median_wall(big, args.repeat, before=lambda: clear_cache(many))
    print(f"{args.runs} runs, --jobs 2, empty cache (entries written): {cold_big:.2f} s "
          f"(goal < 12 s: {'met' if cold_big < 12 else 'NOT met'})")
    plain = median_wall([*big, "--no-cache"], args.repeat)
    print(f"{args.runs} runs, --jobs 2, --no-cache: {plain:.2f} s")
    print(f"{args.runs} runs, again (every run a cache hit): {median_wall(big, args.repeat):.2f} s")
    _, largest, total = cli(*big, "--no-cache")
    print(f"{args.runs} runs, --jobs 2, peak RSS: {largest:.0f} MB largest process, {total:.0f} MB whole tree "
          f"(goal < 2 GB: {'met' if total < 2048 else 'NOT met'})")

    hundred = base / "runs100"
    simulate(hundred, 100)
    pairs = []
    for _ in range(args.pairs):
        one, two = (cli("analyze", "--by", "group", "--jobs", j, "--no-cache", "--format", "csv", "--store",
                        str(hundred), watch=False)[0] for j in ("1", "2"))
        pairs.append(one / two)
    print(f"100 runs, --jobs 1 / --jobs 2 (--no-cache, cold CLI): median {statistics.median(pairs):.2f}x over "
          f"{args.pairs} pairs (goal >= 1.6x)")

    clear_cache(em)
    out = Path(tempfile.mkdtemp())
    first = cli("report", "--store", str(em), "--out", str(out / "r1"), watch=False)[0]
    second = cli("report", "--store", str(em), "--out", str(out / "r2"), watch=False)[0]
    print(f"report of the EM store (24 runs): first {first:.2f} s, second {second:.2f} s, {first / second:.1f}x "
          "(goal >= 3x)")
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
