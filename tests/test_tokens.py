"""Token accounting (issue 29): the usage a llama.cpp-style server reports is stored with every
slot (summed over the slot's attempts), summed per run by `runs`, and `record --plan` turns it
into an estimate of tokens and dollars; store schema 3, with older segments still loading."""

from __future__ import annotations

import io
import json

import polars as pl
import pytest

from conftest import run_cli
from http_servers import Behaviour, start
from toolkit.recorder.backends.openai import usage_of
from toolkit.recorder.cost import Prices
from toolkit.store import Store

SLICE = ["--limit-personas", "2", "--items", "1,2,3", "--repetitions", "4", "--temperature", "0.7"]


def rec(store, url, *extra):
    return run_cli("record", "--backend", "openai", "--model", "m", "--base-url", url, "--store", str(store),
                   "--quiet", *extra)


@pytest.fixture
def usage_server():
    behaviour = Behaviour(usage=True)
    srv, url = start(behaviour)
    yield behaviour, url
    srv.shutdown()


def test_usage_is_stored_per_slot_summed_over_its_attempts_and_per_run(usage_server, tmp_path):
    behaviour, url = usage_server
    store = tmp_path / "s"
    assert rec(store, url, *SLICE).returncode == 0
    s = Store(store)
    m = s.runs()[0]
    rows = s.read_run(m).to_pylist()
    assert len(rows) == 24 and any(r["failures"] for r in rows)  # junk answers were asked again
    # every request the server answered is in exactly one slot's sums: attempts included
    sent = behaviour.sent_usage
    assert sum(r["prompt_tokens"] for r in rows) == sum(p for p, _, _ in sent)
    assert sum(r["completion_tokens"] for r in rows) == sum(c for _, c, _ in sent)
    assert sum(r["cached_tokens"] for r in rows) == sum(c for _, _, c in sent)
    assert len(sent) == sum(1 + r["failures"] for r in rows)
    # a slot's count: its request's usage times the number of times it was asked
    one = next(r for r in rows if r["failures"] == 0)
    asked = json.loads(one["request"])["messages"]
    assert one["prompt_tokens"] == len(json.dumps(asked)) // 4 + 1
    # runs sums them; the fingerprint does not depend on them (how a row was collected, not what it says)
    table = pl.read_csv(io.StringIO(run_cli("runs", "--store", str(store), "--format", "csv").stdout))
    assert table["prompt_tokens"][0] == sum(p for p, _, _ in sent)
    assert table["completion_tokens"][0] == sum(c for _, c, _ in sent)
    human = run_cli("runs", "--store", str(store)).stdout
    assert f"{sum(p for p, _, _ in sent)} / {sum(c for _, c, _ in sent)}" in human


def test_plan_estimates_tokens_and_cost_from_a_stored_run(usage_server, tmp_path):
    behaviour, url = usage_server
    store = tmp_path / "s"
    assert rec(store, url, *SLICE).returncode == 0
    rows = Store(store).read_run(Store(store).runs()[0]).to_pylist()
    rate = [sum(r[c] for r in rows) / len(rows) for c in ("prompt_tokens", "completion_tokens", "cached_tokens")]
    more = ["--limit-personas", "4", "--items", "1,2,3", "--repetitions", "4", "--temperature", "0.7"]
    plan = rec(store, url, *more, "--plan", "--input-price", "2.5", "--output-price", "10")
    assert plan.returncode == 0, plan.stderr
    out = dict(line.split(" ", 1) for line in plan.stdout.splitlines())
    assert out["to_send"] == "24"
    prompt, completion, cached = (24 * r for r in rate)
    assert out["tokens_in"] == f"~{prompt:.0f}" and out["tokens_out"] == f"~{completion:.0f}"
    assert out["tokens_basis"].startswith("the mean of 24 counted slot(s) of run mfq30/base/m/T0.7/persona")
    by_hand = ((prompt - cached) * 2.5 + cached * 2.5 + completion * 10) / 1e6
    assert out["cost"].startswith(f"~${by_hand:.2f} ")
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"input_per_million": 3, "output_per_million": 15, "cached_input_per_million": 0.3}))
    again = rec(store, url, *more, "--plan", "--prices", str(prices))
    cost = dict(line.split(" ", 1) for line in again.stdout.splitlines())["cost"]
    assert cost.startswith(f"~${((prompt - cached) * 3 + cached * 0.3 + completion * 15) / 1e6:.2f} ")
    # nothing was sent by planning
    assert len(behaviour.sent_usage) == sum(1 + r["failures"] for r in rows)


def test_plan_without_stored_tokens_says_its_estimate_is_rough(tmp_path):
    plan = run_cli("record", "--backend", "openai", "--model", "m", "--base-url", "http://127.0.0.1:9/v1",
                   "--store", str(tmp_path / "s"), *SLICE, "--plan")
    assert plan.returncode == 0, plan.stderr
    out = dict(line.split(" ", 1) for line in plan.stdout.splitlines())
    assert out["tokens_basis"].startswith("no stored run reports tokens") and "cost" not in out
    assert int(out["tokens_out"].lstrip("~")) == 24 * 2  # max_tokens 2 a slot, an upper bound


@pytest.mark.parametrize("usage, expected", [
    ({"prompt_tokens": 12, "completion_tokens": 3}, (12, 3, None)),
    ({"prompt_tokens": 12, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 8}}, (12, 3, 8)),
    ({"prompt_tokens": -1, "completion_tokens": True}, (None, None, None)),
    ({"prompt_tokens": 1 << 50, "completion_tokens": "3"}, (None, None, None)),
    ({"prompt_tokens": 1.5, "completion_tokens": 2, "prompt_tokens_details": [1]}, (None, 2, None)),
    ("many", (None, None, None)),
])
def test_usage_from_a_hostile_server_is_unknown_never_a_failure(usage, expected):
    u = usage_of({"usage": usage})
    assert (u.prompt, u.completion, u.cached) == expected


def test_price_tables_are_checked():
    from toolkit.errors import ToolkitError

    with pytest.raises(ToolkitError, match="finite number"):
        Prices(-1, 2)
    assert Prices(2.5, 10).cached_input is None


def test_price_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "p.json"
    bad.write_text(json.dumps({"input_per_million": "2", "output_per_million": 1}))
    res = run_cli("record", "--backend", "openai", "--model", "m", "--base-url", "http://127.0.0.1:9/v1",
                  "--store", str(tmp_path / "s"), *SLICE, "--plan", "--prices", str(bad))
    assert res.returncode == 2 and "p.json" in res.stderr and "must be numbers" in res.stderr
    alone = run_cli("record", "--backend", "openai", "--model", "m", "--base-url", "http://127.0.0.1:9/v1",
                    "--store", str(tmp_path / "s"), *SLICE, "--input-price", "2", "--output-price", "3")
    assert alone.returncode == 2 and "go with --plan" in alone.stderr
