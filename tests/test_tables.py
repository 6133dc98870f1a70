"""Tables for people, data for machines: the terminal view of `analyze` is compact and exact
to its printed digits; csv keeps every column at full precision."""

from __future__ import annotations

import io

import polars as pl
import pytest

from conftest import ROOT, run_cli


def test_default_analyze_table_fits_120_columns_and_matches_the_csv(em_store):
    store = ["--store", str(em_store.root), "--by", "group", "--bootstrap", "100", "--rerun-bootstrap", "20"]
    table = run_cli("analyze", *store)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert max(len(line) for line in lines) <= 120
    assert lines[0].split() == ["model", "variant", "T", "mode", "group", "S", "±", "SE", "R", "±", "SE", "S_corr",
                                "P×items"]
    csv = pl.read_csv(io.StringIO(run_cli("analyze", *store, "--format", "csv").stdout))
    assert csv.width == 22 and len(lines) == 2 + csv.height
    first = csv.row(0, named=True)
    cells = lines[2].split()
    assert cells[3] == "persona" and first["run_id"].endswith("/persona")  # a logprob run would say so
    s, s_se = float(cells[5]), float(cells[7])
    assert s == pytest.approx(first["S"], abs=0.5 * 10 ** -len(cells[5].split(".")[1]))
    assert s_se == pytest.approx(first["S_se"], abs=0.5 * 10 ** -len(cells[7].split(".")[1]))
    assert cells[2] == "0.1" and cells[-1] == f"{first['personas']}×{first['items']}"
    picked = run_cli("analyze", *store, "--columns", "model,group,R")
    assert picked.stdout.splitlines()[0].split() == ["model", "group", "R"]
    bad = run_cli("analyze", *store, "--columns", "model,Rr")
    assert bad.returncode == 2 and "--columns: no column Rr (there are: model, variant" in bad.stderr


def test_compare_table_is_compact_and_its_changes_match_the_csv(em_store):
    store = ["--store", str(em_store.root), "--bootstrap", "100", "--rerun-bootstrap", "20"]
    table = run_cli("compare", *store)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert max(len(line) for line in lines) <= 120 and len(lines) == 2 + 12
    assert lines[0].split()[:4] == ["model", "variant", "T", "group"] and "ΔS % ± SE" in lines[0]
    csv = pl.read_csv(io.StringIO(run_cli("compare", *store, "--format", "csv").stdout))
    for line, row in zip(lines[2:], csv.iter_rows(named=True)):
        cells = line.split()
        assert cells[:2] == [row["model"], row["variant"]]
        if row["variant"] == "base":  # a change from itself is not shown as 0.0 ± 0.0
            assert cells[7] == "baseline" and cells[-1] == "baseline"
        else:
            shown = cells[7]
            decimals = len(shown.split(".")[1]) if "." in shown else 0  # a large SE leaves no decimal
            assert float(shown) == pytest.approx(row["delta_S_pct"], abs=0.5 * 10**-decimals)
    assert run_cli("compare", *store, "--columns", "model,delta_R_pct").stdout.splitlines()[0].split() == [
        "model", "delta_R_pct"]


def test_runs_table_says_valid_share_does_not_apply_to_logprob_runs():
    demo = ["--store", str(ROOT / "parquet")]
    lines = run_cli("runs", *demo).stdout.splitlines()
    assert max(len(line) for line in lines) <= 120
    logprob = next(line for line in lines if line.startswith("mfq30/base/SmolLM2-135M-Instruct/T1.0/logprob"))
    selfrun = next(line for line in lines if line.startswith("mfq30/base/SmolLM2-135M-Instruct/T0.7/self"))
    assert "n/a: digit probabilities" in logprob and "90.0%" in selfrun
    csv = pl.read_csv(io.StringIO(run_cli("runs", *demo, "--format", "csv").stdout))
    assert csv.filter(pl.col("mode") == "logprob")["valid_share"].to_list() == [None]
    assert csv.filter(pl.col("mode") == "self")["valid_share"].to_list() == [0.9]  # 135 of 150 (independent count)
    assert len(csv.columns) == 13  # every column (tokens included), full fingerprint
    shown = run_cli("show", *demo, "--run-id", "mfq30/base/SmolLM2-135M-Instruct/T1.0/logprob", "--limit", "1").stdout
    assert "scored from the stored digit log-probabilities" in shown and "no valid rating" not in shown
