"""Tables for people, data for machines: the terminal view of `analyze` is compact and exact
to its printed digits; csv keeps every column at full precision."""

from __future__ import annotations

import io

import polars as pl
import pytest

from conftest import run_cli


def test_default_analyze_table_fits_120_columns_and_matches_the_csv(em_store):
    store = ["--store", str(em_store.root), "--by", "group", "--bootstrap", "100", "--rerun-bootstrap", "20"]
    table = run_cli("analyze", *store)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert max(len(line) for line in lines) <= 120
    assert lines[0].split() == ["model", "variant", "T", "group", "S", "±", "SE", "R", "±", "SE", "S_corr", "P×items"]
    csv = pl.read_csv(io.StringIO(run_cli("analyze", *store, "--format", "csv").stdout))
    assert csv.width == 22 and len(lines) == 2 + csv.height
    first = csv.row(0, named=True)
    cells = lines[2].split()
    s, s_se = float(cells[4]), float(cells[6])
    assert s == pytest.approx(first["S"], abs=0.5 * 10 ** -len(cells[4].split(".")[1]))
    assert s_se == pytest.approx(first["S_se"], abs=0.5 * 10 ** -len(cells[6].split(".")[1]))
    assert cells[2] == "0.1" and cells[-1] == f"{first['personas']}×{first['items']}"
    picked = run_cli("analyze", *store, "--columns", "model,group,R")
    assert picked.stdout.splitlines()[0].split() == ["model", "group", "R"]
    bad = run_cli("analyze", *store, "--columns", "model,Rr")
    assert bad.returncode == 2 and "--columns: no column Rr (there are: model, variant" in bad.stderr
