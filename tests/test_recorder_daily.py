"""The recorder in daily use, against real HTTP servers on 127.0.0.1: replay-only, failing fast
(dead port, refused credentials, a server that cannot do what is asked), planning without
credentials, honest logprob records, and a backend plugin from outside the toolkit."""

from __future__ import annotations

import socket
import time

from conftest import run_cli, tree_bytes
from http_servers import Behaviour, start
from toolkit.store import Store

SLICE = ["--limit-personas", "1", "--items", "1,2", "--repetitions", "5", "--temperature", "0.7"]


def dead_url() -> str:
    """An address where nothing listens (a port just released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def rec(store, url, *extra, env=None):
    return run_cli("record", "--backend", "openai", "--model", "m", "--base-url", url, "--store", str(store),
                   "--quiet", *extra, env=env)


def test_replay_only_checks_a_store_without_sending(server, tmp_path):
    behaviour, url = server
    store = tmp_path / "s"
    assert rec(store, url, *SLICE).returncode == 0
    sent = behaviour.count
    ok = rec(store, dead_url(), *SLICE, "--endpoint-label", f"openai-chat:{url}", "--replay-only")
    assert ok.returncode == 0 and "all 10 slot(s) stored" in ok.stdout
    more = rec(store, url, "--limit-personas", "1", "--items", "1,2,3", "--repetitions", "5", "--temperature", "0.7",
               "--offline")
    assert more.returncode == 1
    missing = [line for line in more.stderr.splitlines() if line.startswith("missing:")]
    assert len(missing) == 5 and missing[0] == "missing: persona 0 item 3 repetition 1"
    assert behaviour.count == sent  # nothing was sent by either check


def test_dead_port_stops_a_3000_slot_plan_fast_and_keeps_what_is_stored(server, tmp_path):
    _, url = server
    store = tmp_path / "s"
    full = ["--repetitions", "5", "--temperature", "0.7"]  # demo20: 20 personas x 30 items x 5 = 3,000 slots
    assert rec(store, url, *SLICE).returncode == 0
    plan = rec(store, dead_url(), *full, "--endpoint-label", f"openai-chat:{url}", "--plan")
    assert "planned 3000" in plan.stdout and "cached 10" in plan.stdout
    before = tree_bytes(store)
    t0 = time.monotonic()
    res = run_cli("record", "--backend", "openai", "--model", "m", "--base-url", dead_url(), "--store", str(store),
                  *full, "--endpoint-label", f"openai-chat:{url}")  # not --quiet: the summary is checked
    elapsed = time.monotonic() - t0
    # the stop message below proves the failure-streak rule ended it; the bound only guards
    # against trying all 3,000 slots (minutes), whatever the machine's speed
    assert res.returncode == 1 and elapsed < 120, (elapsed, res.stderr[-500:])
    stops = [line for line in res.stderr.splitlines() if line.startswith("error: recording stopped")]
    assert len(stops) == 1 and "connection failures in a row to http://127.0.0.1" in stops[0]
    # the summary counts what was tried apart from what was never sent, and names the error once
    summary = res.stdout.strip().splitlines()[-1]
    failed = int(summary.split("failed ")[1].split(",")[0])
    not_sent = int(summary.split("not sent ")[1].split(",")[0])
    assert 1 <= failed <= 20 and failed + not_sent == 2990, summary
    failures = [line for line in res.stderr.splitlines() if line.startswith("  failed: ")]
    assert len(failures) == 1 and "more slot(s) with the same error" in failures[0], res.stderr
    assert tree_bytes(store) == before  # the 10 stored rows untouched, nothing half-written
    assert run_cli("verify", "--store", str(store)).returncode == 0


def test_refused_credentials_stop_at_once(tmp_path):
    behaviour = Behaviour(plan=["echo401"])
    srv, url = start(behaviour)
    try:
        res = rec(tmp_path / "s", url, "--api-key-env", "TK_TEST_KEY", *SLICE, "--concurrency", "2",
                  env={"TK_TEST_KEY": "sk-secret-123"})
    finally:
        srv.shutdown()
    assert res.returncode == 1 and behaviour.count <= 2  # one request per worker at most, no retries
    assert "refuses the credentials" in res.stderr and "sk-secret-123" not in res.stderr


def test_plan_needs_no_credentials(server, tmp_path):
    _, url = server
    res = rec(tmp_path / "s", url, "--api-key-env", "TK_UNSET_KEY", *SLICE, "--plan", env={"TK_UNSET_KEY": ""})
    assert res.returncode == 0 and "to_send 10" in res.stdout


def test_logprob_rows_store_the_most_likely_token_and_the_server_reports(tmp_path):
    behaviour = Behaviour(plan=["lp_sampled"])
    srv, url = start(behaviour)
    try:
        res = run_cli("record", "--backend", "openai", "--model", "m", "--base-url", url, "--mode", "logprob",
                      "--limit-personas", "2", "--items", "1,2", "--top-logprobs", "5", "--store",
                      str(tmp_path / "s"))
    finally:
        srv.shutdown()
    assert res.returncode == 0, res.stderr
    assert "warning: the server reports model 'served-name', not 'm'" in res.stderr
    store = Store(tmp_path / "s")
    run = store.runs()[0]
    rows = store.read_run(run, ["response", "rating", "finish_reason", "provenance", "request"]).to_pylist()
    assert {r["response"] for r in rows} == {"4"} and {r["rating"] for r in rows} == {4}  # never the sampled "2"
    assert {r["finish_reason"] for r in rows} == {"stop"}
    assert all(r["provenance"].endswith(":served=served-name") for r in rows)
    assert all('"top_logprobs":5' in r["request"] for r in rows)


def test_the_same_error_again_and_again_stops_the_recording(tmp_path):
    behaviour = Behaviour(plan=["no_logprobs"])
    srv, url = start(behaviour)
    try:
        res = run_cli("record", "--backend", "openai", "--model", "m", "--base-url", url, "--mode", "logprob",
                      "--concurrency", "1", "--max-consecutive-failures", "3", "--store", str(tmp_path / "s"))
    finally:
        srv.shutdown()
    # 3 failures, plus at most the one slot handed to the pool ahead of the results (2 per worker, so
    # a busy machine cannot let the worker run further): not 600 (20 personas x 30 items)
    assert res.returncode == 1 and 3 <= behaviour.count <= 4
    assert "3 slots in a row failed with the same error" in res.stderr and "top_logprobs" in res.stderr


PLUGIN = '''
from toolkit.recorder.backends.base import DigitLogprobs, Generation
from toolkit.recorder.backends.registry import BackendSpec


class Echo:
    name = "echo"

    def __init__(self, answer, crash):
        self.endpoint = "echo:constant-" + answer
        self.answer, self.crash = answer, crash

    def generate(self, messages, *, temperature, max_tokens, seed):
        if self.crash:
            raise RuntimeError("a bug in the plugin")
        return Generation(self.answer, "stop", 0.0)

    def digit_logprobs(self, messages, scale, *, seed):
        raise NotImplementedError

    def close(self):
        pass


SPEC = BackendSpec(
    "echo", "answers one constant rating",
    endpoint=lambda o: ("echo:constant-" + o.extra.get("answer", "3"), o.model or "echo"),
    make=lambda o: Echo(o.extra.get("answer", "3"), o.extra.get("crash") == "1"),
    options={"answer": "the rating every answer gives", "crash": "1 to raise a bug"},
)
'''


def test_a_plugin_backend_records_without_touching_the_cli(tmp_path):
    """A package outside toolkit/ registers a backend through the toolkit.backends entry point
    (an installed distribution's metadata on the path) and records into a store."""
    site = tmp_path / "site"
    (site / "echo_backend-0.1.dist-info").mkdir(parents=True)
    (site / "echo_backend.py").write_text(PLUGIN)
    (site / "echo_backend-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-backend\n"
                                                                  "Version: 0.1\n")
    (site / "echo_backend-0.1.dist-info" / "entry_points.txt").write_text(
        "[toolkit.backends]\necho = echo_backend:SPEC\n")
    env = {"PYTHONPATH": str(site)}
    store = ["--store", str(tmp_path / "s")]
    res = run_cli("record", "--backend", "echo", "-o", "answer=4", "--limit-personas", "2", "--items", "1,2",
                  "--repetitions", "2", "--quiet", *store, env=env)
    assert res.returncode == 0, res.stderr
    rows = Store(tmp_path / "s").read_run(Store(tmp_path / "s").runs()[0], ["rating", "provenance"]).to_pylist()
    assert len(rows) == 8 and {r["rating"] for r in rows} == {4}
    assert rows[0]["provenance"].startswith("recorder:echo:echo:constant-4")
    bad = run_cli("record", "--backend", "echo", "-o", "colour=red", *store, env=env)
    assert bad.returncode == 2 and "has no option colour (it takes: answer, crash)" in bad.stderr
    unknown = run_cli("record", "--backend", "nope", *store, env=env)
    assert unknown.returncode == 2 and "available: openai, local, instant, echo" in unknown.stderr
    # a bug (not a backend failure) is raised as one line, exit 3; TOOLKIT_DEBUG=1 shows the traceback
    crash = run_cli("record", "--backend", "echo", "-o", "crash=1", "--variant", "crash", "--limit-personas", "1",
                    "--items", "1", "--repetitions", "1", "--quiet", *store, env=env)
    assert crash.returncode == 3 and crash.stderr.startswith("error: internal error")
    assert "Traceback" not in crash.stderr
    debug = run_cli("record", "--backend", "echo", "-o", "crash=1", "--variant", "crash", "--limit-personas", "1",
                    "--items", "1", "--repetitions", "1", "--quiet", *store, env={**env, "TOOLKIT_DEBUG": "1"})
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "a bug in the plugin" in debug.stderr


def test_a_run_recorded_on_some_items_is_analyzed_on_those(tmp_path):
    store = ["--store", str(tmp_path / "s")]
    res = run_cli("record", "--backend", "instant", "--model", "m", "--items", "1,2,7", "--limit-personas", "4",
                  "--repetitions", "3", "--quiet", *store)
    assert res.returncode == 0, res.stderr
    res = run_cli("analyze", "--by", "group", "--format", "csv", "--bootstrap", "20", "--rerun-bootstrap", "5", *store)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in lines[1:]]
    assert rows[0]["group"] == "all" and rows[0]["items"] == "3" and rows[0]["personas"] == "4"
    assert sum(int(r["items"]) for r in rows[1:]) == 3  # only the groups of items 1, 2 and 7
    assert "note: run mfq30/base/m/T0.1/persona: recorded on 3 of the instrument's 30 items" in res.stderr
    # `runs` takes the analysis commands' selection
    run_cli("record", "--backend", "instant", "--model", "other", "--mode", "self", "--repetitions", "2", "--quiet",
            *store)
    listed = run_cli("runs", "--mode", "self", "--format", "csv", *store)
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 2 and ",other," in listed.stdout
    none = run_cli("runs", "--model", "nobody", *store)
    assert none.returncode == 2 and "no run in store" in none.stderr


def test_refresh_keeps_old_answers_and_analysis_reads_the_newest(tmp_path):
    import json
    import statistics
    from collections import defaultdict

    store = ["--store", str(tmp_path / "s")]
    slice_ = ["--backend", "instant", "--model", "m", "--limit-personas", "3", "--items", "1,2", "--repetitions", "3",
              "--temperature", "0.7"]
    assert run_cli("record", *slice_, "--quiet", *store).returncode == 0
    for generation in (1, 2):
        res = run_cli("record", *slice_, "--refresh", *store)
        assert res.returncode == 0 and "cached 0, sent 18" in res.stdout, res.stdout
        s = Store(tmp_path / "s")
        rows = s.read_run(s.runs()[0], ["persona_id", "item_id", "request", "rating"]).to_pylist()
        assert len(rows) == 18 * (generation + 1)  # every earlier answer is still stored
        newest = defaultdict(list)
        for r in rows:
            if json.loads(r["request"]).get("refresh") == generation:
                newest[(r["persona_id"], r["item_id"])].append(r["rating"])
        assert len(newest) == 6
        want = statistics.fmean(statistics.stdev(v) for v in newest.values())
        res = run_cli("analyze", "--format", "csv", "--bootstrap", "10", "--rerun-bootstrap", "5", *store)
        header, line = res.stdout.splitlines()[:2]
        got = float(dict(zip(header.split(","), line.split(",")))["sigma_bar"])
        assert abs(got - want) < 1e-12
    again = run_cli("record", *slice_, *store)
    assert again.returncode == 0 and "sent 0" in again.stdout  # a plain record finds everything cached
    assert run_cli("record", *slice_, "--replay-only", *store).returncode == 0
    assert run_cli("verify", *store).returncode == 0
    csv = run_cli("export", "--out", str(tmp_path / "out"), *store)
    assert csv.returncode == 2 and "several answers for some slots" in csv.stderr and not (tmp_path / "out").exists()
    assert run_cli("export", "--out", str(tmp_path / "out"), "--format", "parquet", *store).returncode == 0


def test_retry_invalid_re_asks_only_the_answers_that_gave_no_rating(tmp_path):
    """A server that never gives a rating leaves every slot at rating -1; `--retry-invalid`
    against a good server sends exactly those slots again, as a new generation (the earlier
    answers stay; analysis and `runs` read the newest), and then sends nothing more for slots
    that now have a rating."""
    store = tmp_path / "s"
    slice_ = ["--limit-personas", "2", "--items", "1,2,3", "--repetitions", "2", "--max-attempts", "1",
              "--concurrency", "1"]
    silent, silent_url = start(Behaviour(plan=["words"]))
    try:
        first = run_cli("record", "--backend", "openai", "--model", "m", "--base-url", silent_url,
                        "--endpoint-label", "openai-chat:shared", *slice_, "--store", str(store))
    finally:
        silent.shutdown()
    assert first.returncode == 0 and "stored 12" in first.stdout and "rating -1 12" in first.stdout, first.stdout
    good = Behaviour(plan=["words", "words", "ok"])  # a slot's two requests: some get two "words"
    server, url = start(good)
    try:
        again = run_cli("record", "--backend", "openai", "--model", "m", "--base-url", url,
                        "--endpoint-label", "openai-chat:shared", *slice_, "--retry-invalid", "--store", str(store))
        assert again.returncode == 0, again.stderr
        assert "planned 12, cached 0, sent 12" in again.stdout  # every slot had no rating
        sent_first = good.count
        runs = run_cli("runs", "--format", "csv", "--store", str(store)).stdout
        share = float(runs.splitlines()[1].split(",")[runs.splitlines()[0].split(",").index("valid_share")])
        invalid_now = round(12 * (1 - share))
        assert 0 < invalid_now < 12  # the server below answers some slots without a rating again
        third = run_cli("record", "--backend", "openai", "--model", "m", "--base-url", url,
                        "--endpoint-label", "openai-chat:shared", *slice_, "--retry-invalid", "--store", str(store))
        assert third.returncode == 0 and f"cached {12 - invalid_now}, sent {invalid_now}" in third.stdout, third.stdout
        assert invalid_now <= good.count - sent_first <= 2 * invalid_now  # one or two requests a slot, no more
    finally:
        server.shutdown()
    both = run_cli("record", "--backend", "openai", "--model", "m", "--base-url", url, *slice_, "--retry-invalid",
                   "--refresh", "--store", str(store))
    assert both.returncode == 2 and "different record modes" in both.stderr
