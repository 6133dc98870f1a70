"""Paired comparisons: intervals, permutation tests and Holm against independent computations,
and calibration against a generating model with known truth."""

from __future__ import annotations

import io
import json

import numpy as np
import polars as pl
import pytest

from conftest import run_cli
from toolkit.analysis.intervals import acceleration, bca_interval, holm, percentile_interval
from toolkit.analysis.metrics import ItemGroups
from toolkit.analysis.options import AnalysisOptions
from toolkit.analysis.paired import METRICS, compare_pair, point_metrics
from toolkit.ingest.simulate import Effect, PairSpec, pair_counts, pair_truth

SCALE = np.arange(6)


def _pair(P=9, Q=4, seed=0):
    spec = PairSpec(personas=P, items=Q, repetitions=5, effect=Effect(within_factor=1.4, shift=0.3))
    return pair_counts(spec, SCALE, np.random.default_rng(seed))


@pytest.mark.parametrize("paired", [True, False])
def test_replicates_and_permutations_equal_direct_recomputation(paired):
    """The SE, percentile interval and permutation p-value equal a direct recomputation: every
    bootstrap draw and every permutation re-scored from its resampled count tensors with the
    point formulas (np.std and friends), not from sums."""
    a, b = _pair()
    G = ItemGroups([0, 0, 1, 1], 2)
    opts = AnalysisOptions(bootstrap=60, permutations=50, ci_method="percentile", ci_level=0.9)
    res = compare_pair(a, b, SCALE, G, opts, (np.random.default_rng(1), np.random.default_rng(2)), paired)
    P = a.shape[0]
    rng = np.random.default_rng(1)
    deltas = []
    idx_a = rng.integers(0, P, size=(60, P))
    idx_b = idx_a if paired else rng.integers(0, P, size=(60, P))
    for ia, ib in zip(idx_a, idx_b):
        deltas.append(point_metrics(b[ib], SCALE, G) - point_metrics(a[ia], SCALE, G))
    deltas = np.array(deltas)  # (B, 4, G)
    np.testing.assert_allclose(res.delta_se, deltas.std(axis=0, ddof=1), rtol=1e-9)
    # the percentile interval, widened about the estimate as a t interval is (Hesterberg's expanded
    # percentile interval): sqrt(P/(P-1)) t_{P-1} / z, from scipy here; and further where the
    # jackknife SE (personas left out one at a time, recomputed directly) exceeds the bootstrap's
    from scipy import stats

    observed = point_metrics(b, SCALE, G) - point_metrics(a, SCALE, G)
    keep = [np.delete(np.arange(P), i) for i in range(P)]
    if paired:
        loo = [np.array([point_metrics(b[k], SCALE, G) - point_metrics(a[k], SCALE, G) for k in keep])]
    else:
        loo = [np.array([point_metrics(b, SCALE, G) - point_metrics(a[k], SCALE, G) for k in keep]),
               np.array([point_metrics(b[k], SCALE, G) - point_metrics(a, SCALE, G) for k in keep])]
    jack_var = sum((P - 1) / P * ((x - x.mean(axis=0)) ** 2).sum(axis=0) for x in loo)
    ratio = np.maximum(1.0, np.sqrt(jack_var) / deltas.std(axis=0, ddof=1))
    assert (ratio > 1).any()  # the case this data exercises
    wider = np.sqrt(P / (P - 1)) * stats.t.ppf(0.95, P - 1) / stats.norm.ppf(0.95) * ratio
    for got, q in ((res.ci_low, 5), (res.ci_high, 95)):
        np.testing.assert_allclose(got, observed + wider * (np.percentile(deltas, q, axis=0) - observed), rtol=2e-4)

    rng = np.random.default_rng(2)
    np.testing.assert_allclose(res.delta, observed, rtol=1e-15)
    if paired:
        swap = rng.integers(0, 2, size=(50, P)).astype(bool)
        perms = [(np.where(s[:, None, None], b, a), np.where(s[:, None, None], a, b)) for s in swap]
    else:
        pooled = np.concatenate([a, b])
        keys = rng.random((50, 2 * P))
        perms = [(pooled[np.sort(np.argsort(k, kind="stable")[:P])],
                  pooled[np.sort(np.argsort(k, kind="stable")[P:])]) for k in keys]
    extreme = np.zeros_like(observed)
    for pa, pb in perms:
        d = point_metrics(pb, SCALE, G) - point_metrics(pa, SCALE, G)
        extreme += np.abs(d) >= np.abs(observed) * (1 - 1e-9)
    np.testing.assert_array_equal(res.p_value, (1 + extreme) / 51)


def test_bca_agrees_with_scipy_on_a_skewed_mean():
    """Our BCa (from our own resamples) and scipy.stats.bootstrap's BCa (its own resamples) for
    the mean of a skewed sample agree to Monte-Carlo error, and both differ from the percentile
    interval in the same direction."""
    from scipy.stats import bootstrap

    x = np.random.default_rng(5).exponential(size=25)
    B = 40_000
    rng = np.random.default_rng(6)
    reps = x[rng.integers(0, x.size, size=(B, x.size))].mean(axis=1)[:, None]
    jack = np.array([[np.delete(x, i).mean()] for i in range(x.size)])
    low, high = bca_interval(reps, np.array([x.mean()]), acceleration(jack), 0.95)
    ref = bootstrap((x,), np.mean, n_resamples=B, method="BCa", confidence_level=0.95,
                    rng=np.random.default_rng(7)).confidence_interval
    assert low[0] == pytest.approx(ref.low, abs=0.02) and high[0] == pytest.approx(ref.high, abs=0.03)
    p_low, p_high = percentile_interval(reps, 0.95)
    assert (low[0] - p_low[0]) * (ref.low - p_low[0]) > 0 and (high[0] - p_high[0]) * (ref.high - p_high[0]) > 0


def test_holm_hand_worked():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max
    np.testing.assert_allclose(holm(np.array([0.01, 0.04, 0.03, 0.005])), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm(np.array([0.5, np.nan, 0.4])), [0.8, np.nan, 0.8])
    assert holm(np.array([0.9, 0.8])).max() == 1.0


def _coverage(spec: PairSpec, pairs: int, options: AnalysisOptions, seed: int):
    """Share of pairs whose interval covers the true difference, and share rejected at 5%."""
    G = ItemGroups(np.zeros(spec.items, dtype=np.int64), 1)
    truth = pair_truth(spec, SCALE, np.zeros(spec.items, dtype=np.int64), 1, personas=20_000, seed=seed + 1)
    covered = np.zeros((len(METRICS), G.width))
    rejected = np.zeros_like(covered)
    for i in range(pairs):
        rng = np.random.default_rng([seed, i])
        a, b = pair_counts(spec, SCALE, rng)
        res = compare_pair(a, b, SCALE, G, options, (rng, rng), True)
        covered += (res.ci_low <= truth) & (truth <= res.ci_high)
        rejected += res.p_value <= 0.05
    return covered / pairs, rejected / pairs, truth


def test_calibration_against_the_generating_model():
    """A small version of the coverage study (benchmarks/bench_coverage.py runs the full one):
    with no change, the 95% BCa interval of dR covers 0 and the permutation test rejects at the
    nominal rates; with a true change of sigma, the interval covers the true dR as often. The
    bands allow for the binomial error of 200 pairs (sd 1.5 points)."""
    opts = AnalysisOptions(bootstrap=500, permutations=500)
    null = PairSpec(personas=60, items=12, repetitions=6)
    cov, rej, truth = _coverage(null, 200, opts, seed=1)
    assert np.all(truth == 0)
    r = METRICS.index("R")
    assert 0.90 <= cov[r, 0] <= 0.99 and 0.01 <= rej[r, 0] <= 0.10
    shifted = PairSpec(personas=60, items=12, repetitions=6, effect=Effect(within_factor=1.25))
    cov, rej, truth = _coverage(shifted, 200, opts, seed=2)
    assert truth[r, 0] < 0
    assert 0.90 <= cov[r, 0] <= 0.99 and rej[r, 0] > 0.5


def _sim_store(tmp_path):
    """A paired design: the same 30 simulated personas answer a base run and a run whose
    within-cell spread is 1.5 times larger (two independent simulations are never paired)."""
    from toolkit.ingest.simulate import Effect, Spec, simulate_pairs
    from toolkit.protocol.instrument import load_instrument
    from toolkit.store import Store

    store = Store(tmp_path / "s")
    simulate_pairs(store, load_instrument(), pairs=1, spec=Spec(personas=30, repetitions=5), seed=1, model_prefix="m",
                   effect=Effect(within_factor=1.5, variant="insecure-code"))
    return store


def test_cli_paired_contract_and_agreement_with_analyze(tmp_path):
    import io

    import polars as pl

    store = _sim_store(tmp_path)
    common = ["--store", str(store.root), "--format", "csv", "--bootstrap", "300", "--permutations", "300"]
    res = run_cli("compare", "--paired", "--by", "group", *common)
    assert res.returncode == 0, res.stderr
    df = pl.read_csv(io.StringIO(res.stdout))
    assert df.columns == ["family", "model", "variant", "group", "metric", "baseline", "estimate", "delta",
                          "delta_pct", "delta_se", "ci_low", "ci_high", "ci_method", "p_value", "p_holm", "paired"]
    assert df.height == 6 * 4 and df["paired"].all() and set(df["ci_method"]) == {"bca"}
    assert (df["ci_low"] <= df["delta"]).all() and (df["delta"] <= df["ci_high"]).all()
    assert (df["p_holm"] >= df["p_value"]).all()
    # estimate and baseline are what analyze prints for the two runs (same personas retained)
    an = pl.read_csv(io.StringIO(run_cli("analyze", "--by", "group", "--store", str(store.root), "--format", "csv",
                                         "--bootstrap", "10", "--rerun-bootstrap", "5").stdout))
    for metric in ("S", "sigma_bar", "R", "S_corrected"):
        for variant, column in (("insecure-code", "estimate"), ("base", "baseline")):
            want = an.filter(pl.col("variant") == variant).sort("group")[metric].to_numpy()
            got = df.filter(pl.col("metric") == metric).sort("group")[column].to_numpy()
            np.testing.assert_allclose(got, want, rtol=1e-12)
    sigma = df.filter((pl.col("metric") == "sigma_bar") & (pl.col("group") == "all"))
    assert sigma["p_value"][0] < 0.01 and sigma["ci_low"][0] > 0  # spread_within 0.6 -> 0.9
    unpaired = run_cli("compare", "--unpaired", "--ci-method", "percentile", *common)
    assert unpaired.returncode == 0 and set(pl.read_csv(io.StringIO(unpaired.stdout))["paired"]) == {False}
    bad = run_cli("compare", "--paired", "--ci-level", "95", *common)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: the confidence level must be between 0 and 1, not 95.0"]


def test_paired_comparison_is_identical_for_any_worker_count(tmp_path):
    from toolkit.analysis.api import paired_compare

    store = _sim_store(tmp_path)
    opts = AnalysisOptions(bootstrap=200, permutations=200)
    one = paired_compare(store, by_group=True, options=opts).frame
    two = paired_compare(store, by_group=True, options=opts.but(jobs=2, backend="loky")).frame
    assert one.equals(two)
    assert not one.equals(paired_compare(store, by_group=True, options=opts.but(seed=1)).frame)


def test_runs_sharing_a_handful_of_personas_are_not_paired_and_say_why(tmp_path):
    """Issue 27: two 10-persona runs sharing 2 personas were compared 'paired' on those 2."""
    store = tmp_path / "s"
    assert run_cli("simulate", "--runs", "1", "--persona-count", "10", "--repetitions", "3", "--store", str(store)) \
        .returncode == 0
    out = tmp_path / "csv"
    assert run_cli("export", "--out", str(out), "--store", str(store)).returncode == 0
    [base_csv] = list(out.rglob("*.csv"))
    lines = base_csv.read_text().splitlines()
    shifted = [lines[0]] + [str(int(line.split(",", 1)[0]) + 8) + "," + line.split(",", 1)[1] for line in lines[1:]]
    for variant, text in (("base", lines), ("tuned", shifted)):
        (tmp_path / variant).mkdir()
        (tmp_path / variant / "m_temp07.csv").write_text("\n".join(text) + "\n")
    s2 = tmp_path / "s2"
    assert run_cli("import", str(tmp_path / "base"), str(tmp_path / "tuned"), "--store", str(s2)).returncode == 0
    res = run_cli("compare", "--paired", "--bootstrap", "200", "--permutations", "200", "--format", "csv",
                  "--wide", "--store", str(s2))
    assert res.returncode == 0, res.stderr
    df = pl.read_csv(io.StringIO(res.stdout))
    assert not df["paired"].any() and set(df["personas"]) == {10}
    assert set(df["pairing"]) == {"unpaired: 2 of 10 personas shared (pairing needs 80%)"}
    assert "note: mfq30/tuned/m/T0.7/persona against mfq30/base/m/T0.7/persona: unpaired: 2 of 10" in res.stderr
    relaxed = run_cli("compare", "--paired", "--bootstrap", "200", "--permutations", "200", "--format", "csv",
                      "--wide", "--min-shared", "0.2", "--store", str(s2))
    df = pl.read_csv(io.StringIO(relaxed.stdout))
    # 2 shared personas allow a permutation p-value of 2**(1-2) = 0.5 at best: never below 0.05
    assert not df["paired"].any() and "cannot give a permutation p-value below 0.05" in df["pairing"][0]


def test_runs_answered_by_different_persona_files_are_not_paired(tmp_path):
    personas = tmp_path / "other.json"
    personas.write_text(json.dumps([f"Someone else, number {i}" for i in range(20)]))
    store = ["--store", str(tmp_path / "s")]
    common = ["record", "--backend", "instant", "--model", "m", "--items", "1,2,3,4,5,6", "--repetitions", "2",
              "--quiet", *store]
    assert run_cli(*common, "--variant", "base").returncode == 0
    assert run_cli(*common, "--variant", "tuned", "--personas", str(personas)).returncode == 0
    res = run_cli("compare", "--paired", "--bootstrap", "100", "--permutations", "100", "--format", "csv", "--wide",
                  *store)
    assert res.returncode == 0, res.stderr
    df = pl.read_csv(io.StringIO(res.stdout))
    assert not df["paired"].any()
    assert set(df["pairing"]) == {"unpaired: the runs were answered by different persona sets"}
    same = run_cli(*common, "--variant", "again")
    assert same.returncode == 0
    df = pl.read_csv(io.StringIO(run_cli("compare", "--paired", "--bootstrap", "100", "--permutations", "100",
                                         "--format", "csv", "--wide", "--variant", "base,again", *store).stdout))
    assert df["paired"].all() and df["pairing"][0] == "paired on 20 personas, the same persona set"


def test_paired_simulation_round_trip_recovers_the_planted_effect(tmp_path):
    """simulate --paired -> compare --paired: the two runs are paired (they share their simulated
    personas), the planted change of within-cell spread is found for sigma_bar and R with the sign
    and size the generating model gives (expected values at n, which the CLI prints), and S_corrected,
    which tracks the persona spread, does not claim an effect the planted one does not have."""
    import io

    import polars as pl

    store = tmp_path / "s"
    sim = run_cli("simulate", "--paired", "--runs", "1", "--persona-count", "60", "--repetitions", "5",
                  "--effect-within-factor", "1.4", "--format", "csv", "--store", str(store))
    assert sim.returncode == 0, sim.stderr
    truth = pl.read_csv(io.StringIO(sim.stdout))
    assert truth["variant"].to_list() == ["base", "effect"]
    planted = {m: float(truth[f"expected_{m}"][1] - truth[f"expected_{m}"][0]) for m in ("sigma_bar", "R")}
    res = run_cli("compare", "--paired", "--wide", "--format", "csv", "--bootstrap", "1000", "--permutations", "500",
                  "--store", str(store))
    assert res.returncode == 0, res.stderr
    df = pl.read_csv(io.StringIO(res.stdout))
    assert df["paired"].all() and df["pairing"][0].startswith("paired on 60 personas, the same persona set")
    for metric, change in planted.items():
        row = df.filter(pl.col("metric") == metric).row(0, named=True)
        assert row["ci_low"] <= change <= row["ci_high"], (metric, change, row)
        assert (row["ci_high"] < 0 or row["ci_low"] > 0) and row["p_value"] < 0.01  # found, with its sign
    # two independent simulations draw their own personas: never paired, and the output says why
    from toolkit.ingest.simulate import Spec, simulate
    from toolkit.protocol.instrument import load_instrument
    from toolkit.store import Store

    apart = Store(tmp_path / "t")
    for seed, variant in ((1, "base"), (2, "other")):
        simulate(apart, load_instrument(), runs=1, spec=Spec(personas=60, repetitions=5, variant=variant), seed=seed,
                 model_prefix="ind")
    res = run_cli("compare", "--paired", "--wide", "--format", "csv", "--bootstrap", "200", "--permutations", "200",
                  "--store", str(apart.root))
    df = pl.read_csv(io.StringIO(res.stdout))
    assert res.returncode == 0 and not df["paired"].any()
    assert set(df["pairing"]) == {"unpaired: the runs were answered by different persona sets"}
    assert "different persona sets" in res.stderr


def test_imported_runs_told_their_persona_file_pair_by_it(tmp_path):
    """`import --personas FILE` records the persona set with each run: runs imported with the same
    file pair on it, with another file they are unpaired and say why, and a persona id beyond the
    file's length is refused with its line."""
    rng = np.random.default_rng(5)

    def run_csv(path, personas=12):
        rows = [f"{p},{q},{r},{int(rng.integers(0, 6))},0,x,t" for p in range(personas) for q in range(1, 31)
                for r in (1, 2, 3)]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("persona_id,question_id,run_index,rating,failures,response,collected_at\n"
                        + "\n".join(rows) + "\n")
        return path

    ours, theirs = tmp_path / "ours.json", tmp_path / "theirs.json"
    ours.write_text(json.dumps([f"Persona {i}" for i in range(12)]))
    theirs.write_text(json.dumps([f"Another persona {i}" for i in range(12)]))
    store = ["--store", str(tmp_path / "s")]
    for variant, file in (("base", ours), ("tuned", ours), ("other", theirs)):
        res = run_cli("import", str(run_csv(tmp_path / variant / "m_temp07.csv")), "--personas", str(file), *store)
        assert res.returncode == 0, res.stderr
    opts = ["--bootstrap", "100", "--permutations", "100", "--format", "csv", "--wide", *store]
    df = pl.read_csv(io.StringIO(run_cli("compare", "--paired", *opts).stdout))
    by_variant = {r["variant"]: r["pairing"] for r in df.iter_rows(named=True)}
    assert by_variant == {"tuned": "paired on 12 personas, the same persona set",
                          "other": "unpaired: the runs were answered by different persona sets"}
    short = tmp_path / "short.json"
    short.write_text(json.dumps([f"Persona {i}" for i in range(5)]))
    res = run_cli("import", str(run_csv(tmp_path / "x" / "n_temp07.csv")), "--personas", str(short), *store)
    assert res.returncode == 2 and "persona 5 is beyond the 5 personas" in res.stderr and ":" in res.stderr


def test_t_quantile_and_the_expansion_against_scipy():
    from scipy import stats

    from toolkit.analysis.intervals import expansion, t_quantile

    for df in range(5, 400):
        for p in (0.9, 0.95, 0.975, 0.995):
            tol = 1e-3 if df < 9 else 5e-5 if df < 20 else 1e-6
            assert abs(t_quantile(p, df) - stats.t.ppf(p, df)) <= tol * stats.t.ppf(p, df), (df, p)
    for units in (10, 25, 100, 1000):
        want = np.sqrt(units / (units - 1)) * stats.t.ppf(0.975, units - 1) / stats.norm.ppf(0.975)
        assert expansion(units, 0.95) == pytest.approx(want, rel=2e-5)
    assert expansion(2, 0.95) == 1.0 and 1 < expansion(1000, 0.95) < 1.002


def _direct_corrected_sigma(counts, G):
    """sigma_bar_corrected by its definition, independently: per group, the mean over the cells
    with two or more answers of the ddof=1 SD over c4(n), c4 from scipy's gamma function."""
    from scipy.special import gammaln

    n = counts.sum(axis=2)
    s1 = (counts * SCALE).sum(axis=2)
    s2 = (counts * SCALE * SCALE).sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = np.sqrt(np.maximum(s2 - s1 * s1 / n, 0) / (n - 1))
        c4 = np.sqrt(2 / (n - 1)) * np.exp(gammaln(n / 2) - gammaln((n - 1) / 2))
    ok = n >= 2
    val = np.where(ok, sd / np.where(ok, c4, 1), 0.0)
    groups = np.asarray(G.of_items)
    out = [val[:, ok.any(axis=0)].sum() / ok.sum()]
    out += [val[:, groups == g].sum() / ok[:, groups == g].sum() for g in range(G.n)]
    return np.array(out)


def test_corrected_companions_of_a_paired_comparison():
    """compare_pair(corrected=True) leaves the four published metrics' bits alone and adds
    sigma_bar_corrected and R_corrected whose values, bootstrap SEs and permutation p-values
    equal a direct recomputation from the resampled count tensors (c4 from scipy here)."""
    a, b = _pair(P=12)
    a[0, 1] = 0
    a[0, 1, 3] = 1  # a one-answer cell: left out of the corrected sigma_bar
    G = ItemGroups([0, 0, 1, 1], 2)
    opts = AnalysisOptions(bootstrap=40, permutations=30, ci_method="percentile")
    plain = compare_pair(a, b, SCALE, G, opts, (np.random.default_rng(1), np.random.default_rng(2)), True)
    both = compare_pair(a, b, SCALE, G, opts, (np.random.default_rng(1), np.random.default_rng(2)), True,
                        corrected=True)
    assert both.metrics == METRICS + ("sigma_bar_corrected", "R_corrected")
    for field in ("baseline", "estimate", "delta_se", "ci_low", "ci_high", "p_value"):
        np.testing.assert_array_equal(getattr(both, field)[:4], getattr(plain, field))
    np.testing.assert_allclose(both.baseline[4], _direct_corrected_sigma(a, G), rtol=1e-12)
    np.testing.assert_allclose(both.estimate[5], 1 / _direct_corrected_sigma(b, G), rtol=1e-12)
    P = a.shape[0]
    idx = np.random.default_rng(1).integers(0, P, size=(40, P))
    direct = np.array([_direct_corrected_sigma(b[i], G) - _direct_corrected_sigma(a[i], G) for i in idx])
    np.testing.assert_allclose(both.delta_se[4], direct.std(axis=0, ddof=1), rtol=1e-9)
    swap = np.random.default_rng(2).integers(0, 2, size=(30, P)).astype(bool)
    observed = _direct_corrected_sigma(b, G) - _direct_corrected_sigma(a, G)
    extreme = 0
    for s in swap:
        swapped_a, swapped_b = np.where(s[:, None, None], b, a), np.where(s[:, None, None], a, b)
        d = _direct_corrected_sigma(swapped_b, G) - _direct_corrected_sigma(swapped_a, G)
        extreme = extreme + (np.abs(d) >= np.abs(observed) * (1 - 1e-9))
    np.testing.assert_array_equal(both.p_value[4], (1 + extreme) / 31)


def test_cli_compare_corrected_agrees_with_analyze_corrected(tmp_path):
    store = _sim_store(tmp_path)
    common = ["--store", str(store.root), "--format", "csv", "--bootstrap", "200", "--permutations", "200"]
    res = run_cli("compare", "--paired", "--corrected", *common)
    assert res.returncode == 0, res.stderr
    df = pl.read_csv(io.StringIO(res.stdout))
    assert df["metric"].to_list() == list(METRICS) + ["sigma_bar_corrected", "R_corrected"]
    plain = pl.read_csv(io.StringIO(run_cli("compare", "--paired", *common).stdout))
    assert df.head(4).equals(plain)
    an = pl.read_csv(io.StringIO(run_cli("analyze", "--corrected", "--store", str(store.root), "--format", "csv",
                                         "--bootstrap", "10", "--rerun-bootstrap", "5").stdout))
    for metric in ("sigma_bar_corrected", "R_corrected"):
        row = df.filter(pl.col("metric") == metric).row(0, named=True)
        assert row["baseline"] == an.filter(pl.col("variant") == "base")[metric][0]
        assert row["estimate"] == an.filter(pl.col("variant") == "insecure-code")[metric][0]
    refused = run_cli("compare", "--corrected", *common)
    assert refused.returncode != 0 and "--corrected applies to --paired" in refused.stderr
