"""Where analysis work runs: the fork server's workers, the units a worker analyzes on its own
(a run with the family its retention reads), and how the runs are cut into chunks."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, run_cli
from toolkit.analysis import analyze
from toolkit.analysis.cells import load_counts
from toolkit.analysis.options import AnalysisOptions
from toolkit.analysis.selection import MIN_PERSONAS_FOR_INTERSECTION, family_units
from toolkit.errors import StoreCorrupt
from toolkit.ingest.simulate import Spec, simulate_run
from toolkit.parallel.pool import Workers, chunks
from toolkit.protocol.instrument import load_instrument
from toolkit.report import format_frame
from toolkit.store import Store

TEMPERATURES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
FAST = AnalysisOptions(bootstrap=60, rerun_bootstrap=20)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Store:
    """A temperature sweep of one model (10 runs; each loses a few personas to unparseable
    answers, different ones at each temperature) and three single runs of other models."""
    store = Store(tmp_path_factory.mktemp("sweep") / "s")
    inst = load_instrument()
    for i, t in enumerate(TEMPERATURES):
        simulate_run(store, inst, "swept", Spec(personas=80, repetitions=2, invalid_share=0.07, temperature=t),
                     seed=100 + i)
    for i in range(3):
        simulate_run(store, inst, f"single-{i}", Spec(personas=20, repetitions=4), seed=200 + i)
    return store


def _complete(store: Store, m) -> set[int]:
    """Personas with a valid rating on every item, straight from the count tensor."""
    rc = load_counts(store, m)
    return {int(p) for p, row in zip(rc.persona_ids, rc.counts.sum(axis=2)) if (row > 0).all()}


def test_chunks_are_balanced_contiguous_and_a_multiple_of_the_workers():
    items = list(range(100))
    parts = chunks(items, 2)
    assert [x for p in parts for x in p] == items
    assert len(parts) % 2 == 0 and len(parts) >= 8
    assert max(map(len, parts)) - min(map(len, parts)) <= 1 and max(map(len, parts)) <= 4
    assert chunks(items, 1) == [items]
    assert chunks([1, 2, 3], 2) == [[1], [2], [3]]  # never more chunks than items
    assert chunks([], 2) == []
    seven = chunks(list(range(7)), 3)
    assert [x for p in seven for x in p] == list(range(7)) and len(seven) == 7


def test_a_split_family_reads_the_whole_family(sweep):
    runs = sweep.runs()
    swept = [m for m in runs if m.model == "swept"]
    units = family_units(runs, runs, "family")
    family_parts = [u for u in units if u[0][0].model == "swept"]
    assert [len(ids) for _, ids in family_parts] == [8, 2]  # at most `largest` (8) selected runs a unit
    assert all([m.run_id for m in read] == [m.run_id for m in swept] for read, _ in family_parts)
    assert sorted(i for _, ids in units for i in ids) == sorted(m.run_id for m in runs)  # each once
    assert [len(u[1]) for u in family_units(runs, runs, "family", largest=3) if u[0][0].model == "swept"] == \
        [3, 3, 3, 1]
    assert all(len(read) == 1 for read, _ in family_units(runs, runs, "run"))  # `run` reads nothing else
    one_worker = [len(ids) for read, ids in family_units(runs, runs, "family", largest=None) if len(read) > 1]
    assert one_worker == [10]  # one worker reads the family once


def test_family_retention_in_units_matches_an_independent_intersection(sweep):
    runs = sweep.runs()
    complete = {m.run_id: _complete(sweep, m) for m in runs}
    swept = [m.run_id for m in runs if m.model == "swept"]
    eligible = [complete[r] for r in swept if len(complete[r]) >= MIN_PERSONAS_FOR_INTERSECTION]
    assert len(eligible) >= 5  # the sweep really exercises the intersection...
    common = set.intersection(*eligible)
    assert len(common) < min(map(len, eligible))  # ...and it removes personas
    for retention in ("family", "run"):
        for jobs in (1, 2):
            df = analyze(sweep, options=FAST.but(jobs=jobs, backend="forkserver", retention=retention)).frame
            got = dict(zip(df["run_id"], df["personas"]))
            for r in swept:
                own = complete[r]
                want = own & common if retention == "family" and len(own) >= MIN_PERSONAS_FOR_INTERSECTION else own
                assert got[r] == len(want), (retention, jobs, r)


@pytest.mark.parametrize("backend", ["forkserver", "loky", "threading"])
def test_every_backend_gives_the_same_bytes(sweep, backend):
    ref = format_frame(analyze(sweep, by_group=True, options=FAST).frame, "csv")
    for jobs in (2, 3):
        got = format_frame(analyze(sweep, by_group=True, options=FAST.but(jobs=jobs, backend=backend)).frame, "csv")
        assert got == ref, (backend, jobs)


def test_cli_default_backend_gives_the_same_bytes_as_one_job(sweep):
    one = run_cli("analyze", "--by", "group", "--format", "csv", "--jobs", "1", "--bootstrap", "60",
                  "--rerun-bootstrap", "20", "--store", str(sweep.root))
    two = run_cli("analyze", "--by", "group", "--format", "csv", "--jobs", "2", "--bootstrap", "60",
                  "--rerun-bootstrap", "20", "--store", str(sweep.root))
    assert one.returncode == two.returncode == 0, two.stderr
    assert one.stdout == two.stdout and len(one.stdout.splitlines()) == 1 + 13 * 6


def _worker_facts(_: int) -> tuple[int, int, str | None]:
    """In a worker: its parent's pid and thread count, and its BLAS thread setting."""
    parent = os.getppid()
    threads = int(next(line.split()[1] for line in Path(f"/proc/{parent}/status").read_text().splitlines()
                       if line.startswith("Threads:")))
    return parent, threads, os.environ.get("OPENBLAS_NUM_THREADS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads thread counts from /proc (Linux)")
def test_workers_are_forked_from_a_single_threaded_server():
    """Forking is only safe from a process with one thread: the server imports numpy, polars
    and pyarrow but must not have started a thread pool when it forks the workers."""
    from joblib import delayed

    facts = Workers(jobs=2, backend="forkserver").run([delayed(_worker_facts)(i) for i in range(4)])
    parents = {p for p, _, _ in facts}
    assert len(parents) == 1 and os.getpid() not in parents  # the server, not this process
    assert all(threads == 1 for _, threads, _ in facts)
    assert {blas for _, _, blas in facts} == {"1"}  # one BLAS thread a worker, whatever the user set


def test_forkserver_from_another_thread_falls_back_to_loky(sweep):
    """joblib forks only from the main thread; a notebook's worker thread still gets workers."""
    ref = format_frame(analyze(sweep, options=FAST).frame, "csv")
    got: list[str] = []
    t = threading.Thread(target=lambda: got.append(
        format_frame(analyze(sweep, options=FAST.but(jobs=2, backend="forkserver")).frame, "csv")))
    t.start()
    t.join()
    assert got == [ref]


def test_an_unreadable_run_is_named_or_raised_from_a_worker(sweep, tmp_path):
    """A worker reads the store: a damaged segment is left out and named with a problems list,
    and raised as the store's own error, naming the run, without one."""
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(sweep.root, root)
    store = Store(root)
    victim = next(m for m in store.runs() if m.model == "single-1")
    path = store.object_path(victim.segments[0].object)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    opts = FAST.but(jobs=2, backend="forkserver")
    result = analyze(store, options=opts, on_error="skip")
    df, problems = result.frame, result.skipped
    assert victim.run_id not in set(df["run_id"]) and df.height == 12
    assert len(problems) == 1 and victim.run_id in problems[0] and "damaged" in problems[0]
    with pytest.raises(StoreCorrupt, match="damaged"):
        analyze(store, options=opts)
    assert np.isfinite(df["S"].to_numpy()).all()


SCRIPT = """
import sys
from toolkit.analysis import analyze
from toolkit.analysis.options import AnalysisOptions
from toolkit.store import Store


def main():
    print(analyze(Store(sys.argv[1]), options=AnalysisOptions(jobs=2, backend="forkserver", cache=False,
                                                              bootstrap=20, rerun_bootstrap=5)).frame.height)
"""


@pytest.mark.parametrize("guarded", [True, False])
def test_a_script_without_its_main_guard_is_refused_not_run_again_and_again(sweep, tmp_path, guarded):
    """The fork server imports the calling script: one that analyzes as it is imported would
    start over in the server, and in that server's helpers... It gets one clear error instead."""
    script = tmp_path / "script.py"
    text = SCRIPT + ('\nif __name__ == "__main__":\n    main()\n' if guarded else "\nmain()\n")
    script.write_text(text)
    res = subprocess.run([sys.executable, str(script), str(sweep.root)], capture_output=True, text=True, timeout=120)
    if guarded:
        assert res.returncode == 0 and res.stdout.strip() == "13", res.stderr
    else:
        assert res.returncode == 1 and res.stdout == ""
        line = text.splitlines().index("main()") + 1
        assert f"line {line} of {script}" in res.stderr and 'if __name__ == "__main__":' in res.stderr


DYING = """
import os, sys
from joblib import delayed
from toolkit.errors import WorkerLost
from toolkit.parallel.pool import Workers
try:
    Workers(jobs=2, backend=sys.argv[1]).run([delayed(os._exit)(9) for _ in range(4)])
except WorkerLost as exc:
    print(exc)
    sys.exit(exc.exit_code)
"""


@pytest.mark.parametrize("backend", ["forkserver", "loky"])
def test_a_worker_that_dies_fails_the_call_instead_of_hanging(backend):
    """kill -9 or the out-of-memory killer: multiprocessing.Pool would wait for the lost task
    for ever; the call must end with one line and exit code 1."""
    res = subprocess.run([sys.executable, "-c", DYING, backend], capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stderr
    assert res.stdout.startswith("a worker process stopped before it finished") and res.stdout.count("\n") == 1



def test_ctrl_c_stops_the_workers_and_the_command_at_once(tmp_path):
    """Ctrl-C while workers run: the command stops them instead of waiting for their tasks
    (idle ones waited for work that never came, and the exit waited with them, for ever)."""
    import signal
    import time

    store = Store(tmp_path / "s")
    for i in range(8):
        simulate_run(store, load_instrument(), f"busy-{i}", Spec(), seed=300 + i)
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "analyze", "--jobs", "2", "--bootstrap", "20000",
                             "--rerun-bootstrap", "20000", "--store", str(store.root)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(_descendants(proc.pid)) < 3 and time.monotonic() < deadline:  # the fork server and 2 workers
        time.sleep(0.1)
    helpers = _descendants(proc.pid)
    assert proc.poll() is None and len(helpers) >= 3, helpers
    time.sleep(0.5)  # the workers are in their first runs
    proc.send_signal(signal.SIGINT)
    # What the code controls, whatever the machine's speed: the exit code, nothing on stdout, and
    # every helper process gone. The timeout only guards against the old hang (for ever).
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "Aborted!" in err and out == ""
    deadline = time.monotonic() + 30
    while [p for p in helpers if _alive(p)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in helpers if _alive(p)]


def _descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        kids = [c for c, p in parents.items() if p in frontier]
        found += kids
        frontier = kids
    return found


def _alive(pid: int) -> bool:
    """Running, and not a zombie waiting to be reaped."""
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
