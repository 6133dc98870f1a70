"""Whole-pipeline snapshots, full precision: a change anywhere from request building to the last
digit of R shows up as a snapshot diff.

- the embedded store (a real SmolLM2 recording) replayed to analyze, curves and profiles;
- a recording through a real HTTP server on 127.0.0.1 whose answers are scripted and
  deterministic (digits, junk that forces retries, 429/500 faults, top-logprobs), then the
  store's runs, analyze, curves and profiles.

Snapshots must pass on any machine (tests/test_portability.py): they hold no time, port or
path, only what the protocol and the answers determine.
"""

from __future__ import annotations

import pytest

from conftest import ROOT, run_cli
from http_servers import Behaviour, start

EMBEDDED = ["--store", str(ROOT / "parquet")]


def test_snapshot_embedded_store(snapshot):
    for cmd in (["analyze", "--by", "group"], ["curves", "--by", "group", "--points", "7"], ["profiles"], ["runs"]):
        res = run_cli(*cmd, "--format", "csv", *EMBEDDED)
        assert res.returncode == 0, res.stderr
        assert res.stdout == snapshot(name=" ".join(cmd))


@pytest.fixture(scope="module")
def scripted_recording(tmp_path_factory):
    """Three runs recorded through the real recorder from a scripted server (one at a time, so
    the faults land on the same requests every time)."""
    behaviour = Behaviour(plan=["ok", "ok", "429", "ok", "ok", "500", "ok", "ok", "ok", "malformed"], repeat=False)
    server, url = start(behaviour)
    store = tmp_path_factory.mktemp("scripted") / "store"
    common = ["record", "--backend", "openai", "--model", "scripted-model", "--base-url", url, "--endpoint-label",
              "scripted-server", "--concurrency", "1", "--quiet", "--store", str(store)]
    try:
        for extra in (["--mode", "persona", "--limit-personas", "6", "--repetitions", "3", "--temperature", "0.7"],
                      ["--mode", "logprob", "--limit-personas", "6", "--temperature", "1.0"],
                      ["--mode", "self", "--repetitions", "4", "--temperature", "0.7"]):
            res = run_cli(*common, *extra)
            assert res.returncode == 0, res.stderr
    finally:
        server.shutdown()
    assert behaviour.count > behaviour.ok  # the faults really happened and were retried
    return store


def test_snapshot_recording_through_http_to_metrics(scripted_recording, snapshot):
    store = ["--store", str(scripted_recording)]
    assert run_cli("verify", *store).returncode == 0
    for cmd in (["runs"], ["analyze", "--by", "group"], ["curves", "--points", "5"], ["profiles"]):
        res = run_cli(*cmd, "--format", "csv", *store)
        assert res.returncode == 0, res.stderr
        assert res.stdout == snapshot(name=" ".join(cmd))
