"""`power`: the SE it resamples from a run's cells against the true spread of differences under
the generating model, the normal power formula, and the command."""

from __future__ import annotations

import io

import numpy as np
import polars as pl
import pytest
from scipy.stats import norm

from conftest import run_cli
from toolkit.analysis.metrics import ItemGroups
from toolkit.analysis.paired import METRICS, point_metrics
from toolkit.analysis.power import _pseudo_counts, null_spread
from toolkit.ingest.simulate import PairSpec, pair_counts

SCALE = np.arange(6)


def test_pseudo_counts_count_the_drawn_positions():
    cell = np.array([[[2, 0, 3, 1, 0, 0]]])  # sorted repetitions: 0 0 2 2 2 3
    pos = np.array([[[0, 1, 2, 5, 5, 4]]])
    np.testing.assert_array_equal(_pseudo_counts(pos, np.cumsum(cell, axis=2), 6), [[[2, 0, 2, 2, 0, 0]]])


def test_resampled_se_matches_the_generating_model():
    """The SE of a relative change of R that power resamples from one recorded run of 200
    personas matches the spread over studies of 50 personas drawn from the model itself, within
    the accuracy the module documents (conservative by at most ~15% for R)."""
    spec = PairSpec(personas=200, items=12, repetitions=8)
    G = ItemGroups(np.zeros(12, dtype=np.int64), 1)
    run, _ = pair_counts(spec, SCALE, np.random.default_rng(0))
    r = METRICS.index("R")
    resampled = null_spread(run, SCALE, G, 50, 8, 300, np.random.default_rng(1))[:, r, 0].std(ddof=1)
    truth = []
    for i in range(300):
        a, b = pair_counts(spec, SCALE, np.random.default_rng([2, i]), personas=50)
        before = point_metrics(a, SCALE, G)[r, 0]
        truth.append((point_metrics(b, SCALE, G)[r, 0] - before) / before)
    assert 0.95 <= resampled / np.std(truth, ddof=1) <= 1.25


def test_cli_power_table(tmp_path):
    from toolkit.ingest.simulate import Spec, simulate
    from toolkit.protocol.instrument import load_instrument
    from toolkit.store import Store

    store = Store(tmp_path / "s")
    simulate(store, load_instrument(), runs=1, spec=Spec(personas=40, repetitions=6), seed=3)
    res = run_cli("power", "--persona-counts", "20,80", "--repetition-counts", "4,8", "--deltas", "5,40",
                  "--sims", "40", "--format", "csv", "--store", str(store.root))
    assert res.returncode == 0, res.stderr
    df = pl.read_csv(io.StringIO(res.stdout))
    assert df.height == 4 and df.columns[-2:] == ["power_5pct", "power_40pct"]
    big = df.filter((pl.col("personas") == 80) & (pl.col("repetitions") == 8))
    small = df.filter((pl.col("personas") == 20) & (pl.col("repetitions") == 4))
    assert big["se_pct"][0] < small["se_pct"][0] and big["power_40pct"][0] >= small["power_40pct"][0]
    for row in df.iter_rows(named=True):  # the two-sided normal power from the printed SE
        d = 40 / row["se_pct"]
        assert row["power_40pct"] == pytest.approx(norm.cdf(d - 1.959963984540054) + norm.cdf(-d - 1.959963984540054),
                                                   rel=1e-9)
        assert row["mde_pct"] == pytest.approx((1.959963984540054 + norm.ppf(0.8)) * row["se_pct"], rel=1e-9)
    again = run_cli("power", "--persona-counts", "20,80", "--repetition-counts", "4,8", "--deltas", "5,40",
                    "--sims", "40", "--format", "csv", "--store", str(store.root))
    assert again.stdout == res.stdout  # seeded from the run's content
    bad = run_cli("power", "--persona-counts", "1", "--store", str(store.root))
    assert bad.returncode == 2 and "at least 2 personas" in bad.stderr


def test_power_says_how_its_analytic_answer_errs(tmp_path):
    """The analytic power errs (docs/statistics.md, benchmarks/bench_power.py): optimistic for S
    and S_corrected, conservative for R and sigma_bar. The command says which under the table,
    and says nothing with --simulate, whose columns are the test's own power."""
    from conftest import run_cli

    store = ["--store", str(tmp_path / "s")]
    assert run_cli("simulate", "--runs", "1", "--persona-count", "20", "--repetitions", "3", *store).returncode == 0
    args = ["--sims", "20", "--persona-counts", "20", "--repetition-counts", "3", "--deltas", "20", *store]
    for metric, word in (("S", "optimistic"), ("S_corrected", "optimistic"), ("R", "conservative"),
                         ("sigma_bar", "conservative")):
        res = run_cli("power", "--metric", metric, *args)
        assert res.returncode == 0, res.stderr
        assert word in res.stderr and "--simulate" in res.stderr, (metric, res.stderr)
    res = run_cli("power", "--metric", "S", "--simulate", "10", "--permutations", "50", *args)
    assert res.returncode == 0 and res.stderr == ""


def test_planted_change_is_the_one_asked_for():
    """effect_for finds the effect that changes each metric of the fitted model by the asked
    percentage (to the bisection's precision), in both directions."""
    from toolkit.analysis.power import TRUTH_PERSONAS, Fitted, _change, effect_for

    spec = PairSpec(personas=100, items=12, repetitions=6)
    run, _ = pair_counts(spec, SCALE, np.random.default_rng(3))
    fitted = Fitted.of(run, SCALE)
    assert 0.5 < fitted.spread_personas < 1.1 and 0.4 < fitted.spread_within < 0.8  # drawn at 0.8 and 0.6
    z = fitted.latent(TRUTH_PERSONAS, np.random.default_rng(0))
    for metric in ("S", "S_corrected", "sigma_bar", "R"):
        for delta in (-20.0, 5.0, 30.0):
            effect = effect_for(fitted, metric, delta, 6, SCALE)
            assert _change(fitted, effect, metric, 6, z, SCALE) == pytest.approx(delta / 100, abs=1e-9)


def test_simulated_power_is_the_tests_and_does_not_depend_on_workers(tmp_path):
    """--simulate: a change of 0 is rejected about as often as alpha says, a large one always;
    the same bytes with one worker or two."""
    store = ["--store", str(tmp_path / "s")]
    assert run_cli("simulate", "--runs", "1", "--persona-count", "40", "--repetitions", "5", *store).returncode == 0
    args = ["power", "--metric", "R", "--sims", "20", "--persona-counts", "30", "--repetition-counts", "4",
            "--deltas", "0,60", "--simulate", "120", "--permutations", "200", "--format", "csv", *store]
    one, two = run_cli(*args, "--jobs", "1"), run_cli(*args, "--jobs", "2")
    assert one.returncode == 0, one.stderr
    assert one.stdout == two.stdout
    row = pl.read_csv(io.StringIO(one.stdout)).row(0, named=True)
    assert row["sim_power_0pct"] <= 0.05 + 3 * (0.05 * 0.95 / 120) ** 0.5  # the test's size
    assert row["sim_power_60pct"] == 1.0
    assert row["sim_power_se"] == pytest.approx(max((p * (1 - p) / 120) ** 0.5 for p in (row["sim_power_0pct"], 1.0)))
