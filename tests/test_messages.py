"""Every "why is this empty or refused" case explains itself in words, with exit 2."""

from __future__ import annotations

import pytest

from conftest import ROOT, run_cli
from toolkit.analysis.options import AnalysisOptions
from toolkit.errors import ToolkitError

DEMO = ["--store", str(ROOT / "parquet")]


def _one_line_error(res) -> str:
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.stderr
    return lines[0]


def test_no_matching_run_is_said_in_words_not_python_lists():
    line = _one_line_error(run_cli("analyze", "--model", "nobody", *DEMO))
    assert line.endswith("matches model nobody, mode persona or logprob") and "[" not in line


def test_a_backwards_temperature_grid_is_refused():
    line = _one_line_error(run_cli("curves", "--tmin", "2", "--tmax", "1", *DEMO))
    assert "needs --tmin < --tmax" in line


def test_consistency_says_why_a_model_has_no_sampled_side():
    line = _one_line_error(run_cli("consistency", *DEMO))
    assert "no model has both" in line and "SmolLM2-135M-Instruct (base): no run in store" in line


def test_compare_with_only_baseline_runs_says_there_is_nothing_to_compare(tmp_path):
    store = ["--store", str(tmp_path / "s")]
    assert run_cli("simulate", "--runs", "1", "--persona-count", "4", "--repetitions", "2", *store).returncode == 0
    line = _one_line_error(run_cli("compare", "--summary", "--baseline", "simulated", *store))
    assert "nothing to compare: every selected run is of the baseline variant 'simulated'" in line


def test_curves_in_the_terminal_shows_five_temperatures_unless_all():
    short = run_cli("curves", *DEMO)
    assert short.returncode == 0 and len(short.stdout.splitlines()) == 2 + 5
    assert "5 of 201 temperatures shown: --all for every one" in short.stderr
    assert len(run_cli("curves", "--all", *DEMO).stdout.splitlines()) == 2 + 201
    assert len(run_cli("curves", "--format", "csv", *DEMO).stdout.splitlines()) == 1 + 201
    lines = short.stdout.splitlines()
    assert max(len(line) for line in lines) <= 120 and lines[0].split()[:4] == ["model", "variant", "group", "T"]
    assert [line.split()[3] for line in lines[2:]] == ["0.35", "0.575", "0.8", "1.025", "1.25"]


def test_temperatures_print_as_given_not_to_four_significant_digits():
    lines = run_cli("profiles", *DEMO).stdout.splitlines()
    assert lines[0].split()[2] == "temperature" and {line.split()[2] for line in lines[2:]} == {"0.7"}
    csv = run_cli("curves", "--temperatures", "0.7,1", "--columns", "temperature,S", *DEMO).stdout.splitlines()
    assert [line.split()[0] for line in csv[2:]] == ["0.7", "1"]


def _long_run(path, temperature: float, personas: range, missing_item_1: range) -> None:
    """A long-format run: two repetitions of every item; personas in ``missing_item_1`` gave no
    valid rating on item 1."""
    lines = ["persona,item,repetition,rating,model,variant,temperature"]
    for p in personas:
        for item in range(1, 31):
            for rep in (1, 2):
                rating = -1 if item == 1 and p in missing_item_1 else (p * 7 + item * 3 + rep) % 6
                lines.append(f"{p},{item},{rep},{rating},m,base,{temperature}")
    path.write_text("\n".join(lines) + "\n")


def test_retention_that_drops_every_persona_names_its_rule_and_the_option_that_relaxes_it(tmp_path):
    # 60 complete personas at each temperature, but not the same 60: the papers' rule keeps only
    # personas complete at every temperature of a model, which leaves none
    _long_run(tmp_path / "t01.csv", 0.1, range(60), range(0))
    _long_run(tmp_path / "t07.csv", 0.7, range(120), range(60))
    store = ["--store", str(tmp_path / "store")]
    assert run_cli("import", str(tmp_path / "t01.csv"), str(tmp_path / "t07.csv"), *store).returncode == 0
    res = run_cli("analyze", *store, "--bootstrap", "50", "--rerun-bootstrap", "20")
    assert res.returncode == 1 and res.stdout == ""  # no empty table above "no selected run could be analyzed"
    skipped = [line for line in res.stderr.splitlines() if line.startswith("skipped: ")]
    assert len(skipped) == 2
    assert all("60 personas have a valid rating on all 30 items, but only 0 of them also in every other run of m"
               in line and "--retention run" in line for line in skipped)
    relaxed = run_cli("analyze", *store, "--bootstrap", "50", "--rerun-bootstrap", "20", "--retention", "run",
                      "--format", "csv", "--columns", "temperature,personas")
    assert relaxed.returncode == 0, relaxed.stderr
    assert relaxed.stdout.splitlines()[1:] == ["0.1,60", "0.7,60"]
    bad = run_cli("analyze", *store, "--retention", "item")
    assert bad.returncode == 2 and "'item' is not one of 'family', 'run'" in bad.stderr
    with pytest.raises(ToolkitError, match="unknown retention rule 'item'"):
        AnalysisOptions(retention="item")
