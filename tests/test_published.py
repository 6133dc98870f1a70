"""The published numbers of arXiv 2605.12850, recomputed from its raw data."""

from __future__ import annotations

import polars as pl
import pytest

from conftest import EM, run_cli
from toolkit.analysis import analyze, compare, compare_summary, profiles
from toolkit.analysis.options import AnalysisOptions
from toolkit.store import Selection


@pytest.fixture(scope="module")
def metrics(em_store):
    return analyze(em_store, by_group=True, options=AnalysisOptions(jobs=2)).frame


def expected_rows() -> pl.DataFrame:
    frames = []
    for variant in ("base", "insecure-code", "secure-code"):
        overall = pl.read_csv(EM / "expected" / f"metrics_{variant}.csv")
        overall = overall.with_columns(pl.lit("all").alias("foundation"))
        found = pl.read_csv(EM / "expected" / f"metrics_{variant}_foundation.csv")
        for f in (overall, found):
            frames.append(f.select("model", "foundation", "uncertainty", "uncertainty_uncertainty", "robustness",
                                   "robustness_uncertainty", "susceptibility", "susceptibility_uncertainty", "personas",
                                   "questions").with_columns(pl.lit(variant).alias("variant")))
    return pl.concat(frames)


def test_all_72_published_rows(metrics):
    exp = expected_rows().rename({"personas": "published_personas"})
    assert len(exp) == 72
    joined = exp.join(metrics, left_on=["model", "variant", "foundation"], right_on=["model", "variant", "group"],
                      how="left")
    assert joined["S"].null_count() == 0
    for row in joined.iter_rows(named=True):
        where = f"{row['model']} {row['foundation']}"
        assert row["S"] == pytest.approx(row["susceptibility"], rel=1e-9, abs=0), where
        assert row["sigma_bar"] == pytest.approx(row["uncertainty"], rel=1e-9, abs=0), where
        assert row["R"] == pytest.approx(row["robustness"], rel=1e-9, abs=0), where
        assert row["S_se"] == pytest.approx(row["susceptibility_uncertainty"], rel=0.10), where
        assert row["sigma_bar_se"] == pytest.approx(row["uncertainty_uncertainty"], rel=0.10), where
        assert row["R_se"] == pytest.approx(row["robustness_uncertainty"], rel=0.10), where
        assert row["personas"] == row["published_personas"] == 100, where
        assert row["items"] == row["questions"], where


TABLE1_S = {"deepseek-v3.1": (0.79, 0.84, 0.88), "gpt-4.1": (0.82, 0.66, 1.13), "gpt-4o": (0.79, 0.72, 1.68),
            "qwen3-235b": (0.90, 0.91, 1.44)}
TABLE2_R = {"deepseek-v3.1": (4.08, 2.63, 2.66), "gpt-4.1": (14.48, 6.70, 4.88), "gpt-4o": (9.75, 5.56, 3.05),
            "qwen3-235b": (20.75, 4.68, 2.46)}


def test_tables_1_and_2_printed_digits(metrics):
    cmp = compare(metrics.filter(pl.col("group") == "all")).frame
    for family, printed in TABLE1_S.items():
        rows = {r["variant"]: r for r in cmp.filter(pl.col("family") == family).iter_rows(named=True)}
        got = tuple(round(rows[v]["S"], 2) for v in ("base", "secure-code", "insecure-code"))
        assert got == printed, family
        got_r = tuple(round(rows[v]["R"], 2) for v in ("base", "secure-code", "insecure-code"))
        assert got_r == TABLE2_R[family], family


def test_abstract_averages(metrics):
    summary = compare_summary(compare(metrics.filter(pl.col("group") == "all")).frame)
    ins = summary.filter(pl.col("variant") == "insecure-code").row(0, named=True)
    assert round(ins["mean_delta_S_pct"]) == 55
    assert round(ins["mean_delta_R_pct"]) == -65
    assert round(ins["mean_delta_sigma_bar_pct"]) == 304


def test_profiles_match_direct_computation(em_store):
    prof = profiles(em_store, Selection(model="gpt-4o")).frame
    import csv
    from statistics import mean, stdev
    with open(EM / "self" / "base" / "gpt-4o_temp01_self.csv", newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if int(r["rating"]) >= 0]
    from toolkit.protocol.instrument import load_instrument
    inst = load_instrument()
    for g in inst.groups:
        items = [it.id for it in inst.items if it.group == g]
        per_item = [[int(r["rating"]) for r in rows if int(r["question_id"]) == q] for q in items]
        got = prof.filter(pl.col("group") == g).row(0, named=True)
        assert got["mean"] == pytest.approx(mean(mean(x) for x in per_item), rel=1e-12)
        assert got["std"] == pytest.approx(mean(stdev(x) for x in per_item), rel=1e-12, abs=1e-15)


def test_bad_selections_exit_2(em_store):
    s = str(em_store.root)
    for args, msg in [(["--model", "nope"], "no run"), (["--run-id", "mfq30/base/gpt-4o/T0.1/self"], "is a self run")]:
        res = run_cli("analyze", *args, "--store", s)
        assert res.returncode == 2 and msg in res.stderr
    res = run_cli("profiles", "--model", "gpt-4o", "--variant", "base", "--store", s, "--format", "csv")
    assert res.returncode == 0



def test_too_few_personas_after_retention(tmp_path):
    """Persona 1 never answers item 2 validly: only one persona survives. The CLI names the run
    and the reason on stderr and exits 1; the library, asked for no problem list, raises."""
    from toolkit.ingest.importer import import_paths
    from toolkit.store import Store

    rows = ["persona_id,question_id,run_index,rating,failures,response,collected_at"]
    for q in range(1, 31):
        rows.append(f"0,{q},1,3,0,3,t")
        rows.append(f"1,{q},1,{-1 if q == 2 else 4},0,x,t")
    src = tmp_path / "base" / "m_temp01.csv"
    src.parent.mkdir()
    src.write_text("\n".join(rows) + "\n")
    store = Store(tmp_path / "s")
    import_paths(store, [src])
    res = run_cli("analyze", "--store", str(store.root))
    assert res.returncode == 1 and "skipped: run mfq30/base/m/T0.1/persona: only 1 persona(s)" in res.stderr
    assert "m/T0.1" not in res.stdout
    from toolkit.analysis import analyze
    from toolkit.errors import ToolkitError

    with pytest.raises(ToolkitError, match="only 1 persona"):
        analyze(store)


def test_excess_cv_and_pearson_against_hand_computation(metrics):
    import numpy as np

    from toolkit.analysis import excess, group_cv, pearson

    cmp = compare(metrics).frame
    ex = excess(cmp, "insecure-code", "secure-code").filter(pl.col("group") == "all")
    overall = metrics.filter(pl.col("group") == "all")

    def R(model):
        return overall.filter(pl.col("model") == model)["R"][0]

    by_hand = 100 * (R("gpt-4o-misaligned") - R("gpt-4o")) / R("gpt-4o") - 100 * (
        R("gpt-4o-secure") - R("gpt-4o")) / R("gpt-4o")
    assert ex.filter(pl.col("family") == "gpt-4o")["excess_R_pp"][0] == pytest.approx(by_hand, rel=1e-12)
    assert round(ex["excess_R_pp"].mean()) == -12  # "exceeding the secure control by 12pp on average"

    cv = group_cv(metrics, "R").filter(pl.col("model") == "gpt-4o")["R_cv"][0]
    vals = metrics.filter((pl.col("model") == "gpt-4o") & (pl.col("group") != "all"))["R"].to_numpy()
    assert len(vals) == 5 and cv == pytest.approx(np.std(vals, ddof=1) / np.mean(vals), rel=1e-12)

    r, p = pearson(overall, "S", "R")
    assert r == pytest.approx(np.corrcoef(overall["S"].to_numpy(), overall["R"].to_numpy())[0, 1], rel=1e-12)
    assert 0 <= p <= 1
