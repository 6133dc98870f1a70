"""Recorder against real HTTP servers on 127.0.0.1: cached replay, faults, crash, concurrency."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from conftest import ROOT, run_cli
from http_servers import Behaviour, start
from toolkit.protocol.instrument import load_instrument
from toolkit.protocol.personas import load_personas
from toolkit.protocol.requests import Protocol
from toolkit.recorder.backends.openai import OpenAIBackend
from toolkit.recorder.plan import build_plan
from toolkit.recorder.record import record
from toolkit.store import Store

SLICE = ["--limit-personas", "3", "--items", "1,2,3,4,5", "--repetitions", "2", "--temperature", "0.7"]


def rec(store, url, *extra, env=None):
    return run_cli("record", "--backend", "openai", "--model", "test-model", "--base-url", url, "--store", str(store),
                   *SLICE, *extra, env=env)


def rows_by_key(store):
    out = {}
    for m in store.runs():
        t = store.read_run(m)
        for r in t.select(["request_key", "response", "rating", "failures", "attempts"]).to_pylist():
            out[r["request_key"]] = r
    return out


def test_plan_then_record_then_zero_requests(server, tmp_path):
    behaviour, url = server
    store = Store(tmp_path / "s")
    res = rec(store.root, url, "--plan")
    assert res.returncode == 0 and "to_send 30" in res.stdout and "cached 0" in res.stdout
    assert behaviour.count == 0  # planning sends nothing
    res = rec(store.root, url, "--quiet")
    assert res.returncode == 0, res.stderr
    first = behaviour.count
    assert first >= 30
    res = rec(store.root, url, "--plan")
    assert "to_send 0" in res.stdout and "cached 30" in res.stdout
    res = rec(store.root, url)
    assert res.returncode == 0 and "sent 0" in res.stdout
    assert behaviour.count == first  # the second full invocation sent zero requests
    assert run_cli("verify", "--store", str(store.root)).returncode == 0
    rows = rows_by_key(store)
    assert len(rows) == 30
    # the published protocol: failed short answers are kept, counted, and the accepted one parses
    retried = [r for r in rows.values() if r["failures"]]
    assert retried and all(len(r["attempts"]) == r["failures"] for r in retried)
    assert all(0 <= r["rating"] <= 5 for r in rows.values())


def test_api_key_never_reaches_the_store(server, tmp_path):
    behaviour, url = server
    secret = "sk-test-5f1d2c9a7b-DO-NOT-STORE"
    res = rec(tmp_path / "s", url, "--api-key-env", "MY_TEST_KEY", env={"MY_TEST_KEY": secret})
    assert res.returncode == 0, res.stderr
    assert behaviour.auth == {f"Bearer {secret}"}  # it was sent...
    for path in (tmp_path / "s").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert secret.encode() not in data and b"DO-NOT-STORE" not in data, path  # ...and never stored
    res = rec(tmp_path / "s2", url, "--api-key-env", "UNSET_VAR_FOR_TEST")
    assert res.returncode == 2 and "UNSET_VAR_FOR_TEST" in res.stderr


def test_faults_are_retried_and_recorded_honestly(tmp_path):
    behaviour = Behaviour(plan=["429", "500", "malformed", "slow", "reset", "ok", "ok", "ok"])
    srv, url = start(behaviour)
    try:
        backend = OpenAIBackend(url, "m", timeout=0.5, max_retries=6, backoff_base=0.01, backoff_max=0.05)
        inst = load_instrument()
        plan = build_plan(inst, endpoint=backend.endpoint, model="m", personas=load_personas(),
                          protocol=Protocol(mode="persona", temperature=0.7, repetitions=2), limit_personas=2,
                          items=[1, 2, 3])
        store = Store(tmp_path / "s")
        # one request at a time: every slot meets the fault cycle in order, at most 5 faults in a row
        summary = record(store, plan, inst, backend, variant="base", concurrency=1, flush_rows=4, progress=False)
    finally:
        srv.shutdown()
    assert summary.failed == 0 and summary.sent == 12
    assert backend.retries >= 5  # every kind of fault was met and retried
    assert store.verify() == []
    rows = rows_by_key(store)
    assert len(rows) == 12 and all(r["rating"] in range(6) for r in rows.values())


def test_unrecoverable_faults_store_nothing_bad(tmp_path):
    behaviour = Behaviour(plan=["500"])
    srv, url = start(behaviour)
    try:
        res = run_cli("record", "--backend", "openai", "--model", "m", "--base-url", url, "--store",
                      str(tmp_path / "s"), "--limit-personas", "1", "--items", "1,2", "--repetitions", "1",
                      "--max-retries", "2", "--timeout", "2")
    finally:
        srv.shutdown()
    assert res.returncode == 1  # incomplete: said so, no traceback
    assert "failed 2" in res.stdout and "Traceback" not in res.stderr
    assert behaviour.count == 2 * 3
    assert not Store(tmp_path / "s").runs()  # nothing half-recorded
    behaviour4 = Behaviour(plan=["400"])
    srv, url = start(behaviour4)
    try:
        res = run_cli("record", "--backend", "openai", "--model", "m", "--base-url", url, "--store",
                      str(tmp_path / "s"), "--limit-personas", "1", "--items", "1", "--repetitions", "1")
    finally:
        srv.shutdown()
    assert res.returncode == 1 and behaviour4.count == 1  # a 400 is not retried


def test_kill_minus_9_then_resume_equals_uninterrupted(tmp_path):
    behaviour = Behaviour(delay=0.02)
    srv, url = start(behaviour)
    try:
        args = [sys.executable, str(ROOT / "cli.py"), "record", "--backend", "openai", "--model", "m", "--base-url",
                url, "--limit-personas", "4", "--items", "1,2,3,4,5,6", "--repetitions", "3", "--concurrency", "2",
                "--flush-rows", "5", "--quiet"]
        crashed = tmp_path / "crashed"
        proc = subprocess.Popen(args + ["--store", str(crashed)], env={**os.environ, "TOOLKIT_STORE": ""})
        deadline = time.time() + 60
        while time.time() < deadline:
            m = Store(crashed).runs() if (crashed / "runs").exists() else []
            if m and m[0].rows >= 20:
                break
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        partial = Store(crashed).runs()[0].rows
        assert 20 <= partial < 72
        assert run_cli("verify", "--store", str(crashed)).returncode == 0  # consistent after the kill
        sent_before = behaviour.count
        subprocess.run(args + ["--store", str(crashed)], check=True)
        resumed_requests = behaviour.count - sent_before
        clean = tmp_path / "clean"
        subprocess.run(args + ["--store", str(clean)], check=True)
        before = behaviour.count
        subprocess.run(args + ["--store", str(crashed)], check=True)
        assert behaviour.count == before  # a third invocation sends nothing
    finally:
        srv.shutdown()
    a, b = rows_by_key(Store(crashed)), rows_by_key(Store(clean))
    assert a.keys() == b.keys() and len(a) == 72
    assert all(a[k]["response"] == b[k]["response"] and a[k]["rating"] == b[k]["rating"] for k in a)
    assert Store(crashed).runs()[0].fingerprint == Store(clean).runs()[0].fingerprint
    assert resumed_requests > 0
    assert run_cli("verify", "--store", str(crashed)).returncode == 0


def test_two_recorders_at_once(tmp_path):
    behaviour = Behaviour(delay=0.01)
    srv, url = start(behaviour)
    try:
        args = [sys.executable, str(ROOT / "cli.py"), "record", "--backend", "openai", "--model", "m", "--base-url",
                url, "--limit-personas", "3", "--items", "1,2,3,4", "--repetitions", "3", "--flush-rows", "3",
                "--store", str(tmp_path / "s")]
        procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for _ in range(2)]
        outs = [p.communicate(timeout=120)[0] for p in procs]
    finally:
        srv.shutdown()
    assert all(p.returncode == 0 for p in procs), outs
    store = Store(tmp_path / "s")
    assert store.verify() == []
    m = store.runs()[0]
    assert m.rows == 36  # every request once, whoever stored it first
    dropped = sum(int(o.split("duplicates dropped ")[1].split(",")[0]) for o in outs)
    sent = sum(int(o.split("sent ")[1].split(",")[0]) for o in outs)
    assert sent - dropped == 36


def test_logprob_mode_over_http(server, tmp_path):
    _, url = server
    res = run_cli("record", "--backend", "openai", "--model", "m", "--base-url", url, "--mode", "logprob",
                  "--limit-personas", "4", "--store", str(tmp_path / "s"), "--quiet", "--temperature", "1")
    assert res.returncode == 0, res.stderr
    store = Store(tmp_path / "s")
    t = store.read_run(store.runs()[0])
    lps = t["digit_logprobs"].to_pylist()
    assert len(lps) == 120 and all(sum(v is None for v in row) == 1 for row in lps)  # one digit left out of top-k
    res = run_cli("curves", "--temperatures", "0.5,1", "--format", "csv", "--store", str(tmp_path / "s"))
    assert res.returncode == 0, res.stderr
    import csv
    import io
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [r["imputed_digits"] for r in rows] == ["120", "120"]  # one imputed digit per cell, counted
    assert [r["personas"] for r in rows] == ["4", "4"]
