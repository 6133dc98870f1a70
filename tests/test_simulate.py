"""The simulator: seeded, written like any run, and a ground truth the estimators are checked
against (an independent check of S and sigma_bar and of the bootstrap SEs)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import run_cli
from toolkit.analysis import analyze
from toolkit.analysis.options import AnalysisOptions
from toolkit.ingest.simulate import Spec, simulate
from toolkit.protocol.instrument import load_instrument
from toolkit.report import format_frame
from toolkit.store import Store


def test_simulated_runs_are_ordinary_verified_runs_and_reproducible(tmp_path):
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    spec = Spec(personas=12, repetitions=4, invalid_share=0.05)
    ta = simulate(a, load_instrument(), runs=2, spec=spec, seed=3)
    tb = simulate(b, load_instrument(), runs=2, spec=spec, seed=3)
    assert [t.__dict__ for t in ta] == [t.__dict__ for t in tb]
    assert [m.fingerprint for m in a.runs()] == [m.fingerprint for m in b.runs()]
    assert a.verify() == []
    table = a.read_run(a.runs()[0])
    assert set(table["provenance"].to_pylist()) == {"simulated:toolkit-0.1.0"}
    assert (np.asarray(table["rating"]) == -1).mean() == pytest.approx(0.05, abs=0.03)
    res = run_cli("simulate", "--runs", "2", "--persona-count", "5", "--repetitions", "3", "--format", "csv",
                  "--store", str(tmp_path / "c"))
    assert res.returncode == 0 and res.stdout.splitlines()[0] == "run_id,true_S,true_sigma_bar"
    assert len(res.stdout.splitlines()) == 3


def test_estimators_against_ground_truth(tmp_path):
    """30 runs of 60 personas x 30 items x 8 repetitions from one generating model: the bootstrap
    SEs match the spread of the estimates within 25%, sigma_bar is within 5% of the truth, and
    S carries the expected finite-repetition bias (tau_q^2 includes sigma^2/n)."""
    store = Store(tmp_path / "s")
    spec = Spec(personas=60, repetitions=8, spread_personas=0.7, spread_within=0.8)
    truths = simulate(store, load_instrument(), runs=30, spec=spec, seed=11)
    df = analyze(store, options=AnalysisOptions(bootstrap=300, rerun_bootstrap=60)).frame
    S = df["S"].to_numpy()
    true_S = np.array([t.true_S for t in truths])
    true_sigma = np.array([t.true_sigma_bar for t in truths])
    # bias of S from finite repetitions: sqrt(tau^2 + mean sigma^2/n) is what S estimates
    assert np.mean(S - true_S) > 0
    expected = np.sqrt(true_S**2 + true_sigma**2 / spec.repetitions)
    assert np.mean(S) == pytest.approx(np.mean(expected), rel=0.03)
    # bootstrap SEs against the actual spread of the estimates over runs of one generating model
    assert np.mean(df["S_se"].to_numpy()) == pytest.approx(np.std(S, ddof=1), rel=0.25)
    sigma_bar = df["sigma_bar"].to_numpy()
    assert np.mean(df["sigma_bar_se"].to_numpy()) == pytest.approx(np.std(sigma_bar, ddof=1), rel=0.25)
    # the rerun part alone: the spread around each run's own personas' truth
    assert np.mean(df["S_se_rerun"].to_numpy()) == pytest.approx(np.std(S - true_S, ddof=1), rel=0.25)
    assert np.mean(sigma_bar) == pytest.approx(np.mean(true_sigma), rel=0.05)


def test_chunked_parallel_scoring_is_bit_identical(tmp_path):
    store = Store(tmp_path / "s")
    simulate(store, load_instrument(), runs=9, spec=Spec(personas=20, repetitions=5), seed=2)
    fast = AnalysisOptions(bootstrap=100, rerun_bootstrap=40)
    ref = format_frame(analyze(store, by_group=True, options=fast).frame, "csv")
    for jobs, backend in ((2, "threading"), (3, "loky")):
        opts = AnalysisOptions(bootstrap=100, rerun_bootstrap=40, jobs=jobs, backend=backend)
        got = format_frame(analyze(store, by_group=True, options=opts).frame, "csv")
        assert got == ref, (jobs, backend)
