"""Every "why is this empty or refused" case explains itself in words, with exit 2."""

from __future__ import annotations

from conftest import ROOT, run_cli

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
    assert run_cli("simulate", "--runs", "1", "--personas", "4", "--repetitions", "2", *store).returncode == 0
    line = _one_line_error(run_cli("compare", "--summary", "--baseline", "simulated", *store))
    assert "nothing to compare: every selected run is of the baseline variant 'simulated'" in line


def test_curves_in_the_terminal_shows_five_temperatures_unless_all():
    short = run_cli("curves", *DEMO)
    assert short.returncode == 0 and len(short.stdout.splitlines()) == 2 + 5
    assert "5 of 201 temperatures shown: --all for every one" in short.stderr
    assert len(run_cli("curves", "--all", *DEMO).stdout.splitlines()) == 2 + 201
    assert len(run_cli("curves", "--format", "csv", *DEMO).stdout.splitlines()) == 1 + 201
