"""`diagnose`: per-persona and per-item contributions and shifts, against plain Python and
against the run-level metrics they must add up to."""

from __future__ import annotations

import io
import statistics
from collections import defaultdict

import polars as pl
import pytest

from conftest import run_cli
from toolkit.analysis import analyze
from toolkit.analysis.diagnose import diagnose
from toolkit.analysis.options import AnalysisOptions
from toolkit.ingest.simulate import Spec, simulate
from toolkit.protocol.instrument import load_instrument
from toolkit.store import Store


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("diag") / "s")
    inst = load_instrument()
    simulate(store, inst, runs=1, spec=Spec(personas=8, repetitions=4, variant="base"), seed=1, model_prefix="m")
    simulate(store, inst, runs=1, spec=Spec(personas=8, repetitions=4, spread_within=1.0, variant="insecure-code"),
             seed=2, model_prefix="m")
    return store


def _cells(store: Store, variant: str) -> dict:
    m = next(r for r in store.runs() if r.variant == variant)
    cells = defaultdict(list)
    for row in store.read_run(m, ["persona_id", "item_id", "rating"]).to_pylist():
        cells[(row["persona_id"], row["item_id"])].append(row["rating"])
    return {k: (statistics.fmean(v), statistics.stdev(v)) for k, v in cells.items()}


def _S(cells: dict, personas: list[int], items: list[int]) -> float:
    return statistics.fmean(statistics.stdev([cells[(p, q)][0] for p in personas]) for q in items)


def test_persona_rows_against_plain_python_and_the_run_metrics(pair):
    items = load_instrument().item_ids
    new, old = _cells(pair, "insecure-code"), _cells(pair, "base")
    df = diagnose(pair).frame.filter(pl.col("variant") == "insecure-code")
    personas = sorted(df["persona_id"].to_list())
    assert personas == list(range(8)) and df["baseline_run_id"].null_count() == 0
    full = _S(new, personas, items)
    for r in df.iter_rows(named=True):
        p = r["persona_id"]
        assert r["mean_rating"] == pytest.approx(statistics.fmean(new[(p, q)][0] for q in items), rel=1e-12)
        assert r["sigma"] == pytest.approx(statistics.fmean(new[(p, q)][1] for q in items), rel=1e-12)
        others = [x for x in personas if x != p]
        assert r["S_influence"] == pytest.approx(full - _S(new, others, items), rel=1e-9, abs=1e-12)
        assert r["shift_abs"] == pytest.approx(statistics.fmean(abs(new[(p, q)][0] - old[(p, q)][0]) for q in items),
                                               rel=1e-12)
        assert r["shift_sigma"] == pytest.approx(r["sigma"] - r["base_sigma"], rel=1e-12)
    assert df["shift_abs"].to_list() == sorted(df["shift_abs"].to_list(), reverse=True)
    # contributions add up to the run's sigma_bar and S as analyze prints them
    metrics = analyze(pair, options=AnalysisOptions(bootstrap=0, rerun_bootstrap=0)).frame.filter(
        pl.col("variant") == "insecure-code")
    assert df["sigma"].mean() == pytest.approx(metrics["sigma_bar"][0], rel=1e-12)
    by_item = diagnose(pair, by="item").frame.filter(pl.col("variant") == "insecure-code")
    assert by_item.height == 30 and by_item["tau"].mean() == pytest.approx(metrics["S"][0], rel=1e-12)
    assert (by_item["delta_tau"] == by_item["tau"] - by_item["base_tau"]).all()


def test_cli_diagnose_and_its_figure(pair, tmp_path):
    pytest.importorskip("matplotlib")
    res = run_cli("diagnose", "--format", "csv", "--plot", str(tmp_path / "shifts.png"), "--store", str(pair.root))
    assert res.returncode == 0, res.stderr
    df = pl.read_csv(io.StringIO(res.stdout))
    assert df.height == 16 and df.columns[:4] == ["family", "model", "variant", "persona_id"]
    assert (tmp_path / "shifts.png").read_bytes()[:4] == b"\x89PNG"
    res = run_cli("diagnose", "--variant", "base", "--plot", str(tmp_path / "x.png"), "--store", str(pair.root))
    assert res.returncode == 2 and "no run in the selection has a baseline run" in res.stderr
