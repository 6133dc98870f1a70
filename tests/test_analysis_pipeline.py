"""Determinism, offline guarantee, retention across temperatures and whole-pipeline snapshots."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import ROOT, run_cli
from toolkit.analysis import analyze
from toolkit.analysis.options import AnalysisOptions
from toolkit.ingest.importer import import_paths
from toolkit.report import format_frame
from toolkit.store import Selection, Store


def test_bit_identical_across_jobs_and_backends(em_store):
    ref = analyze(em_store, by_group=True, options=AnalysisOptions(jobs=1, bootstrap=300, rerun_bootstrap=100)).frame
    for jobs, backend in ((2, "threading"), (2, "loky"), (2, "forkserver")):
        other = analyze(em_store, by_group=True,
                        options=AnalysisOptions(jobs=jobs, backend=backend, bootstrap=300, rerun_bootstrap=100)).frame
        assert format_frame(other, "csv") == format_frame(ref, "csv"), (jobs, backend)
    again = analyze(em_store, by_group=True, options=AnalysisOptions(jobs=1, bootstrap=300, rerun_bootstrap=100)).frame
    assert format_frame(again, "csv") == format_frame(ref, "csv")
    seeded = analyze(em_store, by_group=True,
                     options=AnalysisOptions(jobs=1, bootstrap=300, rerun_bootstrap=100, seed=1)).frame
    assert not seeded["S_se"].equals(ref["S_se"])  # the seed matters...
    assert seeded["S"].equals(ref["S"])  # ...only to the bootstrap


def test_cli_output_identical_for_jobs_1_and_2(em_store):
    a = run_cli("analyze", "--format", "csv", "--by", "group", "--jobs", "1", "--store", str(em_store.root))
    b = run_cli("analyze", "--format", "csv", "--by", "group", "--jobs", "2", "--parallel-backend", "loky",
                "--store", str(em_store.root))
    assert a.returncode == b.returncode == 0
    assert a.stdout == b.stdout
    header = a.stdout.splitlines()[0].split(",")
    assert header[:12] == ["model", "variant", "temperature", "group", "S", "S_se", "sigma_bar", "sigma_bar_se",
                           "R", "R_se", "personas", "items"]
    assert len(a.stdout.splitlines()) == 1 + 12 * 6


NO_NETWORK = textwrap.dedent("""
    import socket
    _real = socket.socket
    class _Guard(_real):
        def __init__(self, family=socket.AF_INET, *args, **kwargs):
            if family in (socket.AF_INET, socket.AF_INET6):
                raise OSError("network disabled by test: analysis must not open a socket")
            super().__init__(family, *args, **kwargs)
    socket.socket = _Guard
    def _refuse(*a, **k):
        raise OSError("network disabled by test")
    socket.create_connection = _refuse
    socket.getaddrinfo = _refuse
""")


def test_analysis_runs_with_network_sockets_disabled(em_store, tmp_path):
    """sitecustomize disables AF_INET/AF_INET6 sockets in this process and in every joblib worker
    (spawned by loky, or forked from the fork server, which talks to this process on a Unix socket)."""
    (tmp_path / "sitecustomize.py").write_text(NO_NETWORK)
    env = {"PYTHONPATH": str(tmp_path)}
    probe = subprocess.run([sys.executable, "-c", "import socket; socket.socket()"], capture_output=True, text=True,
                           env={**__import__("os").environ, **env})
    assert probe.returncode != 0 and "network disabled" in probe.stderr  # the guard really bites
    for cmd in (["analyze", "--by", "group", "--jobs", "2", "--parallel-backend", "loky"],
                ["analyze", "--by", "group", "--jobs", "2"], ["profiles"],
                ["compare", "--summary"], ["runs"], ["verify"]):
        res = run_cli(*cmd, "--store", str(em_store.root), env=env)
        assert res.returncode == 0, (cmd, res.stderr)


def test_analysis_import_graph_has_no_network_client():
    code = ("import sys, toolkit.analysis, toolkit.analysis.api, toolkit.report, toolkit.report.site, "
            "toolkit.report.figures, toolkit.audit, toolkit.store, toolkit.store.bundle, cli; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('httpx', 'requests', 'urllib3', 'http') "
            "or m.startswith('toolkit.recorder')]; print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr


def _write_run(path, personas_valid, n_personas=60, seed=0):
    rng = np.random.default_rng(seed)
    rows = ["persona_id,question_id,run_index,rating,failures,response,collected_at"]
    for p in range(n_personas):
        for q in range(1, 31):
            for r in (1, 2):
                v = int(rng.integers(0, 6)) if p in personas_valid or q != 5 else -1
                rows.append(f"{p},{q},{r},{v},0,{v},t")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n")


def test_retention_intersects_temperatures(tmp_path):
    store = Store(tmp_path / "s")
    _write_run(tmp_path / "base" / "m_temp01.csv", set(range(55)))  # 55 valid
    _write_run(tmp_path / "base" / "m_temp05.csv", set(range(3, 60)))  # 57 valid
    _write_run(tmp_path / "base" / "m_temp10.csv", set(range(20)))  # 20 valid: left out of the intersection
    import_paths(store, [tmp_path / "base"])
    df = analyze(store, options=AnalysisOptions(bootstrap=10, rerun_bootstrap=5)).frame.sort("temperature")
    assert df["personas"].to_list() == [52, 52, 20]
    # selecting one temperature keeps the same rule (the other runs are still in the store)
    one = analyze(store, Selection(temperature=0.1), options=AnalysisOptions(bootstrap=10, rerun_bootstrap=5)).frame
    assert one["personas"].to_list() == [52] and one["S"][0] == df["S"][0]


@pytest.fixture
def pipeline_store(em_store):
    """The whole pipeline: the 24 shared CSVs imported by the session fixture (read-only)."""
    return em_store


def test_snapshot_analyze_by_group(pipeline_store, snapshot):
    res = run_cli("analyze", "--by", "group", "--format", "csv", "--store", str(pipeline_store.root))
    assert res.returncode == 0
    assert res.stdout == snapshot


def test_snapshot_compare_and_profiles(pipeline_store, snapshot):
    for cmd in (["compare", "--format", "markdown"], ["compare", "--summary", "--format", "csv"],
                ["profiles", "--format", "csv"], ["runs", "--format", "csv"]):
        res = run_cli(*cmd, "--store", str(pipeline_store.root))
        assert res.returncode == 0
        assert res.stdout == snapshot(name=" ".join(cmd))


def test_formula_change_breaks_the_snapshot(pipeline_store, monkeypatch, snapshot):
    """Changing ddof in tau_q (a plausible slip) changes the snapshot text, so syrupy would fail."""
    from toolkit.analysis import metrics

    # no cache: its key holds a digest of the source files, and a patch in memory is not one
    kwargs = dict(by_group=True, options=AnalysisOptions(bootstrap=50, rerun_bootstrap=20, cache=False))
    honest = format_frame(analyze(pipeline_store, **kwargs).frame, "csv")
    monkeypatch.setattr(metrics, "_tau", lambda mu: np.std(mu, axis=-2, ddof=0))
    slipped = format_frame(analyze(pipeline_store, **kwargs).frame, "csv")
    assert slipped != honest
    assert honest == snapshot


def test_a_cold_analysis_imports_only_what_it_needs(tmp_path):
    """The cold start is most of a command on a few runs: `analyze` writing its cache entries
    and `curves` import neither Arrow's compute module (~40 ms, replaced by store.arrays),
    numba (only for many runs), scipy, matplotlib nor joblib (one worker runs in-process)."""
    from toolkit.ingest.simulate import Spec, simulate
    from toolkit.protocol.instrument import load_instrument

    store = Store(tmp_path / "s")
    simulate(store, load_instrument(), runs=2, spec=Spec(personas=12, repetitions=3), seed=2)
    heavy = ("pyarrow.compute", "numba", "scipy", "matplotlib", "joblib")
    for argv in (["analyze", "--by", "group", "--format", "csv", "--bootstrap", "50", "--rerun-bootstrap", "20",
                  "--store", str(store.root)], ["curves", "--format", "csv", "--bootstrap", "50", "--points", "5"]):
        code = (f"import sys\nfrom toolkit.cli import main\ntry:\n    main({argv!r}, standalone_mode=False)\n"
                f"except SystemExit:\n    pass\nprint([m for m in {heavy!r} if m in sys.modules], file=sys.stderr)")
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
        assert res.returncode == 0 and res.stderr.strip().splitlines()[-1] == "[]", (argv, res.stderr[-2000:])
    assert len(list((store.root / "cache").rglob("*"))) > 2  # the analysis did write its entries
