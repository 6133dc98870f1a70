"""Logit method: curves against a straightforward loop, imputation, bad input, determinism."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from conftest import LOGIT_CSV, run_cli
from toolkit.analysis import analyze, consistency, curves
from toolkit.analysis.options import AnalysisOptions
from toolkit.ingest.importer import import_paths
from toolkit.protocol.instrument import load_instrument
from toolkit.report import format_frame
from toolkit.store import Store


@pytest.fixture
def gemma(logit_store):
    return logit_store


def straightforward(csv_path, T):
    """Loop over cells: softmax of the digit logprobs at T, then moments; then S and sigma_bar."""
    import csv

    cells = {}
    with open(csv_path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            lps = [float(row[f"digit_{k}_logprob"]) for k in range(6)]
            m = max(lps)
            w = [math.exp((lp - m) / T) for lp in lps]
            z = sum(w)
            p = [x / z for x in w]
            mu = sum(k * pk for k, pk in enumerate(p))
            sd = math.sqrt(sum((k - mu) ** 2 * pk for k, pk in enumerate(p)))
            cells[(int(row["persona_id"]), int(row["question_id"]))] = (mu, sd)
    personas = sorted({p for p, _ in cells})
    items = sorted({q for _, q in cells})
    taus = []
    for q in items:
        mus = [cells[(p, q)][0] for p in personas]
        mean = sum(mus) / len(mus)
        taus.append(math.sqrt(sum((x - mean) ** 2 for x in mus) / (len(mus) - 1)))
    sigma_bar = sum(sd for _, sd in cells.values()) / len(cells)
    return sum(taus) / len(taus), sigma_bar


@pytest.mark.parametrize("T", [1.0, 0.35])
def test_curve_matches_straightforward_loop(gemma, T):
    df = curves(gemma, temperatures=[T], options=AnalysisOptions(bootstrap=200)).frame
    S, sigma_bar = straightforward(LOGIT_CSV, T)
    row = df.row(0, named=True)
    assert row["S"] == pytest.approx(S, rel=1e-12)
    assert row["sigma_bar"] == pytest.approx(sigma_bar, rel=1e-12)
    assert row["R"] == pytest.approx(1 / sigma_bar, rel=1e-12)
    assert row["personas"] == 100 and row["items"] == 30 and row["imputed_digits"] == 0


def test_published_point_and_monotonic_curve(gemma):
    df = curves(gemma).frame  # default grid 0.35..1.25, 201 points, 2000 draws
    assert len(df) == 201
    first, last = df.row(0, named=True), df.row(200, named=True)
    assert (first["temperature"], last["temperature"]) == (0.35, 1.25)
    assert round(first["R"], 3) == 11.353 and round(first["S"], 4) == 0.8612  # the published curve at T = 0.35
    assert np.all(np.diff(df["R"].to_numpy()) < 0)  # more temperature, less robustness
    assert np.all(np.diff(df["sigma_bar"].to_numpy()) > 0)
    assert np.all(np.diff(df["S"].to_numpy()) < 0)  # and, for this model, slightly less susceptibility
    assert last["R"] == pytest.approx(2.9728, abs=1e-4) and last["S"] == pytest.approx(0.8241, abs=1e-4)
    assert (df["S_se"] > 0).all() and (df["R_se"] > 0).all()


def test_curves_bit_identical_across_jobs(gemma):
    a = curves(gemma, points=41, by_group=True, options=AnalysisOptions(jobs=1)).frame
    b = curves(gemma, points=41, by_group=True, options=AnalysisOptions(jobs=2, backend="loky")).frame
    assert format_frame(a, "csv") == format_frame(b, "csv")
    for _ in range(5):  # threads race for the process-wide BLAS limit: repeat to catch it
        c = curves(gemma, points=41, by_group=True, options=AnalysisOptions(jobs=2, backend="threading")).frame
        assert format_frame(c, "csv") == format_frame(a, "csv")


def test_curve_snapshot(gemma, snapshot):
    res = run_cli("curves", "--format", "csv", "--points", "7", "--by", "group", "--store", str(gemma.root))
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0].startswith(
        "model,variant,group,temperature,S,S_se,sigma_bar,sigma_bar_se,R,R_se,personas,items,imputed_digits")
    assert res.stdout == snapshot


def test_analyze_accepts_logprob_run(gemma):
    df = analyze(gemma, options=AnalysisOptions(bootstrap=200)).frame
    assert df["temperature"].to_list() == [1.0]
    S, sigma_bar = straightforward(LOGIT_CSV, 1.0)
    assert df["S"][0] == pytest.approx(S, rel=1e-12) and df["sigma_bar"][0] == pytest.approx(sigma_bar, rel=1e-12)


def write_logprob_csv(path, L, missing=(), top=None):
    """A logprob CSV in the published layout; `missing` lists (persona, item, digit) left empty."""
    cols = ["persona_id", "question_id", "first_token"] + [f"digit_{k}_logprob" for k in range(6)] + [
        "raw_top_logprobs_json", "collected_at"]
    lines = [",".join(cols)]
    P, Q, _ = L.shape
    for p in range(P):
        for q in range(Q):
            vals = ["" if (p, q, k) in missing else repr(float(L[p, q, k])) for k in range(6)]
            raw = top.get((p, q), "") if top else ""
            lines.append(",".join([str(p), str(q + 1), str(int(np.argmax(L[p, q])))] + vals
                                  + ['"' + raw.replace('"', '""') + '"', "t"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def random_logprobs(P, Q, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.5, size=(P, Q, 6)) + rng.normal(0, 2, size=(P, 1, 6))
    return logits - np.log(np.exp(logits).sum(axis=2, keepdims=True))


def test_imputation_uses_topk_minimum_and_is_counted(tmp_path):
    L = random_logprobs(3, 30, 1)
    top = {(0, 0): json.dumps([{"token": "3", "logprob": -0.1}, {"token": "x", "logprob": -9.5}])}
    write_logprob_csv(tmp_path / "v" / "m_logprobs.csv", L, missing={(0, 0, 5), (1, 2, 0)}, top=top)
    store = Store(tmp_path / "s")
    import_paths(store, [tmp_path / "v" / "m_logprobs.csv"], temperature=1.0)
    df = curves(store, temperatures=[1.0], options=AnalysisOptions(bootstrap=50)).frame
    assert df["imputed_digits"][0] == 2
    # independent: cell (0,0) digit 5 -> -9.5 (top-k min); cell (1,2) digit 0 -> min of its present digits
    L2 = L.copy()
    L2[0, 0, 5] = -9.5
    L2[1, 2, 0] = L[1, 2, 1:].min()
    w = np.exp(L2)
    w /= w.sum(axis=2, keepdims=True)
    mu = (w * np.arange(6)).sum(axis=2)
    assert df["S"][0] == pytest.approx(np.std(mu, axis=0, ddof=1).mean(), rel=1e-12)


def test_bad_input_exit_2(tmp_path, gemma):
    L = random_logprobs(2, 30, 2)
    write_logprob_csv(tmp_path / "v" / "m_logprobs.csv", L, missing={(1, 4, k) for k in range(6)})
    store = tmp_path / "s"
    assert run_cli("import", str(tmp_path / "v" / "m_logprobs.csv"), "--temperature", "1", "--store",
                   str(store)).returncode == 0
    res = run_cli("curves", "--store", str(store))  # the run is named and left out: exit 1, not a crash
    assert res.returncode == 1 and "skipped: run mfq30/v/m/T1.0/logprob" in res.stderr
    assert "every digit is missing" in res.stderr
    for bad_t in (["--temperatures", "0.5,0"], ["--temperatures", "-1"], ["--tmin", "0", "--points", "3"]):
        res = run_cli("curves", *bad_t, "--store", str(gemma.root))
        assert res.returncode == 2 and "> 0" in res.stderr, bad_t
    sampled = tmp_path / "base" / "m_temp01.csv"
    sampled.parent.mkdir()
    sampled.write_text("persona_id,question_id,run_index,rating,failures,response,collected_at\n0,1,1,3,0,3,t\n")
    import_paths(Store(tmp_path / "s2"), [sampled])
    res = run_cli("curves", "--run-id", "mfq30/base/m/T0.1/persona", "--store", str(tmp_path / "s2"))
    assert res.returncode == 2 and "persona run" in res.stderr


def test_consistency_sampled_vs_logit(tmp_path):
    """Ratings sampled from the same distributions the logprobs describe: both methods agree."""
    P, Q, reps, T = 60, 30, 10, 0.7
    L = random_logprobs(P, Q, 3)
    write_logprob_csv(tmp_path / "v" / "m_logprobs.csv", L)
    w = np.exp(L / T)
    w /= w.sum(axis=2, keepdims=True)
    rng = np.random.default_rng(4)
    lines = ["persona_id,question_id,run_index,rating,failures,response,collected_at"]
    for p in range(P):
        for q in range(Q):
            for r, v in enumerate(rng.choice(6, size=reps, p=w[p, q]), start=1):
                lines.append(f"{p},{q + 1},{r},{v},0,{v},t")
    (tmp_path / "v" / "m_temp07.csv").write_text("\n".join(lines) + "\n")
    store = Store(tmp_path / "s")
    import_paths(store, [tmp_path / "v" / "m_temp07.csv"])
    import_paths(store, [tmp_path / "v" / "m_logprobs.csv"], temperature=1.0)
    df = consistency(store, options=AnalysisOptions(bootstrap=300, rerun_bootstrap=100))
    row = df.row(0, named=True)
    assert row["temperature"] == 0.7
    assert abs(row["S_sampled"] - row["S_logit"]) < 4 * row["S_sampled_se"]
    sigma_true = np.sqrt((w * (np.arange(6) - (w * np.arange(6)).sum(axis=2, keepdims=True)) ** 2).sum(axis=2))
    assert row["R_logit"] == pytest.approx(1 / sigma_true.mean(), rel=1e-12)
    # The sampled sigma_pq (ddof=1 std of 10 draws) is biased low for skewed cells, so sampled R
    # exceeds the exact one; it must match the expectation of that estimator (Monte Carlo here).
    mc = np.mean([rng.choice(6, size=(200, reps), p=w[p, q]).std(axis=1, ddof=1).mean()
                  for p in range(P) for q in range(Q)])
    assert row["R_sampled"] == pytest.approx(1 / mc, rel=0.03)
    assert row["R_sampled"] > row["R_logit"]
    assert load_instrument().n_points == 6


def test_curve_figure(gemma, tmp_path):
    from PIL import Image  # matplotlib depends on pillow

    out = tmp_path / "curve.png"
    res = run_cli("curves", "--points", "9", "--bootstrap", "100", "--plot", str(out), "--store", str(gemma.root))
    assert res.returncode == 0, res.stderr
    with Image.open(out) as im:
        assert im.size == (1000, 400)
        assert len(np.unique(np.asarray(im.convert("L")))) > 20  # lines and bands were drawn, not a blank canvas
