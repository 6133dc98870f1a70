"""Recording through a provider's batch API by file (issue 29): `record --batch-file` writes the
requests, a provider answers them (here: the real scripted HTTP server on 127.0.0.1, asked line
by line as a batch runner would), `record --batch-results` stores them and writes the retries as
the next batch. The store ends with the same fingerprint as a live recording of the same answers."""

from __future__ import annotations

import json

import httpx

from conftest import run_cli
from http_servers import Behaviour, start
from toolkit.hashing import canonical_json, sha256_text
from toolkit.store import Store

SLICE = ["--limit-personas", "3", "--items", "1,2,3,4", "--repetitions", "3", "--temperature", "0.7"]


def rec(store, url, *extra):
    return run_cli("record", "--backend", "openai", "--model", "m", "--base-url", url, "--endpoint-label", "provider",
                   "--store", str(store), "--quiet", *SLICE, *extra)


def provider(url: str, requests_file, results_file, fail: set[int] = frozenset()) -> list[dict]:
    """Answer a batch input file as the Batch API does: one output line per request, in any
    order; the line numbers in ``fail`` come back expired."""
    lines = [json.loads(line) for line in requests_file.read_text().splitlines()]
    out = []
    with httpx.Client() as client:
        for i, req in enumerate(lines):
            if i in fail:
                out.append({"id": f"r{i}", "custom_id": req["custom_id"], "response": None,
                            "error": {"code": "batch_expired", "message": "This request could not be executed"}})
                continue
            body = client.post(url + "/chat/completions", json=req["body"]).json()
            out.append({"id": f"r{i}", "custom_id": req["custom_id"],
                        "response": {"status_code": 200, "request_id": f"q{i}", "body": body}, "error": None})
    results_file.write_text("\n".join(json.dumps(o) for o in reversed(out)) + "\n")  # order is not kept
    return lines


def test_batch_rounds_store_what_live_recording_stores(tmp_path):
    behaviour = Behaviour()
    server, url = start(behaviour)
    try:
        live = tmp_path / "live"
        assert rec(live, url).returncode == 0
        asked_live = behaviour.count
        store = tmp_path / "batch"
        first = tmp_path / "b0.jsonl"
        wrote = rec(store, url, "--batch-file", str(first))
        assert wrote.returncode == 0, wrote.stderr
        assert behaviour.count == asked_live  # writing a batch file sends nothing
        lines = [json.loads(line) for line in first.read_text().splitlines()]
        assert len(lines) == 36 and all(line["url"] == "/v1/chat/completions" and line["method"] == "POST"
                                        for line in lines)
        assert all(line["custom_id"] == sha256_text(canonical_json(line["body"])) for line in lines)
        rounds, current, every = 0, first, []
        while current.read_text().strip():
            results = tmp_path / f"r{rounds}.jsonl"
            asked = provider(url, current, results)
            every += ["--batch-results", str(results)]  # a slot is stored once all its attempts are answered
            nxt = tmp_path / f"b{rounds + 1}.jsonl"
            res = rec(store, url, *every, "--batch-file", str(nxt))
            assert res.returncode == 0, res.stderr
            answers = [json.loads(line) for line in results.read_text().splitlines()]
            unparseable = {a["custom_id"] for a in answers
                           if a["response"]["body"]["choices"][0]["message"]["content"] == "Well"}
            follow = [json.loads(line) for line in nxt.read_text().splitlines()] if nxt.read_text() else []
            # the follow-up batch holds exactly the slots whose answer gave no rating: the next attempt of each
            by_id = {r["custom_id"]: r["body"] for r in asked}
            assert sorted(canonical_json(f["body"]["messages"]) for f in follow) == sorted(
                canonical_json(by_id[c]["messages"]) for c in unparseable)
            assert all(f["custom_id"] not in by_id for f in follow)  # the next attempt, never the same request
            rounds, current = rounds + 1, nxt
        assert rounds >= 2  # some first answers were junk, and asked again in a follow-up batch
        a, b = Store(live).runs()[0], Store(store).runs()[0]
        assert (a.run_id, a.rows, a.fingerprint) == (b.run_id, b.rows, b.fingerprint)
        again = rec(store, url, "--batch-file", str(tmp_path / "none.jsonl"))
        assert "still to send 0" in again.stdout and (tmp_path / "none.jsonl").read_text() == ""
    finally:
        server.shutdown()


def first_round(store, url, tmp_path, fail=frozenset()):
    """`record --batch-file` for the whole plan, answered by the provider: (requests, results file)."""
    first, results = tmp_path / "b0.jsonl", tmp_path / "r0.jsonl"
    assert rec(store, url, "--batch-file", str(first)).returncode == 0
    return provider(url, first, results, fail=fail), results


def test_failed_and_expired_requests_are_asked_again_and_the_rest_is_stored(server, tmp_path):
    _, url = server  # the conftest fixture: a scripted server on 127.0.0.1, shut down after the test
    store, nxt = tmp_path / "s", tmp_path / "b1.jsonl"
    asked, results = first_round(store, url, tmp_path, fail={0, 5, 9})
    res = rec(store, url, "--batch-results", str(results), "--batch-file", str(nxt))
    assert res.returncode == 0, res.stderr
    assert "3 request(s) failed or expired (asked again)" in res.stdout
    follow = [json.loads(line)["custom_id"] for line in nxt.read_text().splitlines()]
    assert {asked[i]["custom_id"] for i in (0, 5, 9)} <= set(follow)  # the same request, asked again
    missing = rec(store, url, "--replay-only")
    assert missing.returncode == 1
    assert f"{len(follow)} of 36 slot(s) missing" in missing.stderr


def test_result_files_are_checked_line_by_line_and_refused_whole(server, tmp_path):
    _, url = server
    store = tmp_path / "s"
    _, results = first_round(store, url, tmp_path)
    good = results.read_text().splitlines()
    cases = {
        "duplicate": (good + [good[0]], "repeats line"),
        "unknown id": ([json.dumps({**json.loads(good[0]), "custom_id": "0" * 64})] + good[1:],
                       "answer no request of this plan"),
        "not an id": ([json.dumps({**json.loads(good[0]), "custom_id": "row-1"})] + good[1:],
                      "custom_id is not a request key"),
        "error body": ([json.dumps({**json.loads(good[0]), "response": {"status_code": 200,
                                                                       "body": {"error": "quota"}}})] + good[1:],
                       "not a chat completion"),
        "not json": (good[:3] + ["{broken"] + good[3:], "not a JSON object"),
    }
    for name, (lines, message) in cases.items():
        bad = tmp_path / f"{name}.jsonl"
        bad.write_text("\n".join(lines) + "\n")
        res = rec(store, url, "--batch-results", str(bad))
        assert res.returncode == 2, (name, res.stdout, res.stderr)
        assert message in res.stderr and "nothing stored" in res.stderr, (name, res.stderr)
        assert f"{bad}:" in res.stderr  # the file and the line
        assert Store(store).runs() == [] or Store(store).runs()[0].rows == 0, name


def online(store, url, *extra):
    return rec(store, url, "--batch", *extra)


def test_batch_api_round_trip_resumes_and_matches_a_live_recording(tmp_path):
    """`record --batch` against a real Files + Batches server: submit, poll until done, collect,
    follow-up batches for unparseable answers, and the live recording's fingerprint at the end."""
    from http_servers import BatchProvider, start_provider

    behaviour = Behaviour()
    live_server, live_url = start(behaviour)
    provider = BatchProvider(polls=2)
    server, url = start_provider(provider)
    try:
        live = tmp_path / "live"
        assert rec(live, live_url).returncode == 0
        store = tmp_path / "batch"
        first = online(store, url)
        assert first.returncode == 0, first.stderr
        assert "batch batch_0 submitted: 36 request(s)" in first.stdout and provider.uploads == 1
        waiting = online(store, url)  # polled once: still running, nothing uploaded again
        assert "batch batch_0: in_progress" in waiting.stdout and provider.uploads == 1
        for _ in range(10):
            res = online(store, url)
            assert res.returncode == 0, res.stderr
            if "still to send 0" in res.stdout and "in_progress" not in res.stdout and "submitted" not in res.stdout:
                break
        else:
            raise AssertionError("the batch recording did not finish")
        assert provider.created >= 2  # the retries of junk answers went out as follow-up batches
        a, b = Store(live).runs()[0], Store(store).runs()[0]
        assert (a.run_id, a.rows, a.fingerprint) == (b.run_id, b.rows, b.fingerprint)
        rows = Store(store).read_run(b).to_pylist()
        assert all(r["prompt_tokens"] == 10 * (1 + r["failures"]) for r in rows)  # the batch usage, summed
    finally:
        server.shutdown()
        live_server.shutdown()


def test_a_crash_between_upload_and_create_resumes_without_a_second_upload(tmp_path):
    from http_servers import BatchProvider, start_provider

    provider = BatchProvider(polls=2, break_create=1, fail={2, 7})
    server, url = start_provider(provider)
    try:
        store = tmp_path / "s"
        crashed = online(store, url)
        assert crashed.returncode == 1 and "HTTP 500" in crashed.stderr
        assert "run the same command again" in crashed.stderr
        assert provider.uploads == 1 and provider.created == 0
        again = online(store, url)
        assert again.returncode == 0, again.stderr
        assert provider.uploads == 1 and provider.created == 1  # the uploaded file, batched now
        assert "batch batch_0: in_progress" in again.stdout
        done = online(store, url)  # collected: 2 expired requests are asked again in a new batch
        assert done.returncode == 0, done.stderr
        assert "the results report 2 request(s) failed or expired" in done.stdout
        missing = rec(store, url, "--replay-only")
        assert missing.returncode == 1 and "slot(s) missing" in missing.stderr
        state = json.loads(next((store / "batches").glob("*.json")).read_text())
        assert [b["collected"] for b in state["batches"][:1]] == [True]
    finally:
        server.shutdown()


def test_batch_outputs_never_overwrite_foreign_files_or_land_in_a_store(server, tmp_path):
    _, url = server
    store = tmp_path / "s"
    notes = tmp_path / "notes.jsonl"
    notes.write_text("my own notes\n")
    refused = rec(store, url, "--batch-file", str(notes))
    assert refused.returncode == 2 and "was not written by this command" in refused.stderr
    assert notes.read_text() == "my own notes\n" and not (store / "runs").exists()
    _, results = first_round(store, url, tmp_path)  # the store now holds a run
    inside = rec(store, url, "--batch-results", str(results), "--batch-file", str(store / "b.jsonl"))
    assert inside.returncode == 2 and "inside the store" in inside.stderr and not (store / "b.jsonl").exists()
    assert not (store / "runs").exists() or Store(store).runs()[0].rows == 0  # refused before collecting
    again = rec(store, url, "--batch-results", str(results), "--batch-file", str(tmp_path / "b0.jsonl"))
    assert again.returncode == 0, again.stderr  # its own earlier file is replaced


def test_a_damaged_batch_state_is_one_clear_error(tmp_path):
    from http_servers import BatchProvider, start_provider

    provider = BatchProvider(polls=5)
    server, url = start_provider(provider)
    try:
        store = tmp_path / "s"
        assert online(store, url).returncode == 0
        state = next((store / "batches").glob("*.json"))
        doc = json.loads(state.read_text())
        doc["batches"][0]["results"] = ["../../../etc/passwd"]
        state.write_text(json.dumps(doc))
        res = online(store, url)
        assert res.returncode == 2 and "batch state entry #0: results is not a list of file names" in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and provider.uploads == 1
    finally:
        server.shutdown()
