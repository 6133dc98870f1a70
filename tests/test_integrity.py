"""Integrity: every printed number comes from verified bytes, no row is ever lost, hostile input
never gets through. One test (or more) per finding of the adversarial review (issue 10),
numbered as there, plus a randomized corruption test and a gc-versus-writer race."""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, run_cli
from http_servers import Behaviour, start
from toolkit.analysis import analyze, curves, profiles
from toolkit.analysis.options import AnalysisOptions
from toolkit.errors import StoreCorrupt, ToolkitError
from toolkit.ingest.importer import import_files, import_paths
from toolkit.report import format_frame
from toolkit.store import Store

HEADER = "persona_id,question_id,run_index,rating,failures,response,collected_at\n"


def persona_csv(path: Path, personas=4, reps=2, seed=0, extra: str = "") -> Path:
    rng = np.random.default_rng(seed)
    rows = [f"{p},{q},{r},{v},0,{v},t" for p in range(personas) for q in range(1, 31) for r in range(1, reps + 1)
            for v in [int(rng.integers(0, 6))]]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "\n".join(rows) + "\n" + extra, encoding="utf-8")
    return path


def self_csv(path: Path, reps=3, seed=1) -> Path:
    rng = np.random.default_rng(seed)
    rows = [f"{q},{r},{int(rng.integers(0, 6))},0,x,t" for q in range(1, 31) for r in range(1, reps + 1)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("question_id,run_index,rating,failures,response,collected_at\n" + "\n".join(rows) + "\n")
    return path


def logprob_csv(path: Path, personas=4, seed=2) -> Path:
    rng = np.random.default_rng(seed)
    cols = ["persona_id", "question_id"] + [f"digit_{k}_logprob" for k in range(6)]
    lines = [",".join(cols)]
    for p in range(personas):
        for q in range(1, 31):
            logits = rng.normal(0, 2, 6)
            lp = logits - np.log(np.exp(logits).sum() * 1.1)
            lines.append(",".join([str(p), str(q)] + [repr(float(v)) for v in lp]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def store(tmp_path) -> Store:
    s = Store(tmp_path / "store")
    import_paths(s, [persona_csv(tmp_path / "src" / "base" / "m_temp07.csv"),
                     persona_csv(tmp_path / "src" / "base" / "n_temp07.csv", seed=5)])
    import_paths(s, [self_csv(tmp_path / "src" / "base" / "m_temp07_self.csv")])
    import_paths(s, [logprob_csv(tmp_path / "src" / "base" / "m_logprobs.csv")], temperature=1.0)
    assert s.verify() == []
    return s


def outputs(store: Store) -> str:
    """Everything the analysis commands print for a store (small bootstraps: this runs often)."""
    return "\n".join([
        format_frame(analyze(store, by_group=True, options=AnalysisOptions(bootstrap=30, rerun_bootstrap=10)).frame,
                     "csv"),
        format_frame(profiles(store).frame, "csv"),
        format_frame(curves(store, temperatures=[0.5, 1.0], options=AnalysisOptions(bootstrap=30)).frame, "csv"),
    ])


def record_against(plan: list[str], store_dir: Path, *args: str, env: dict | None = None):
    """One `toolkit record` against a 127.0.0.1 server that answers by ``plan``."""
    server, url = start(Behaviour(plan=plan))
    try:
        return run_cli("record", "--backend", "openai", "--model", "m", "--base-url", url, "--limit-personas", "1",
                       *args, "--store", str(store_dir), env=env)
    finally:
        server.shutdown()


def manifest_file(store: Store, mode: str) -> Path:
    m = next(m for m in store.runs() if m.mode == mode)
    return store.manifest_path(m.run_id)


def edit_manifest(path: Path, **changes) -> None:
    raw = json.loads(path.read_text())
    raw.update(changes)
    path.write_text(json.dumps(raw))


# ----- the recorder never loses buffered rows ----------------------------------------------
def test_unencodable_rows_are_failed_slots_and_the_rest_is_stored(tmp_path):
    """A row that cannot be encoded (here: a non-text finish_reason handed over by a backend)
    is a failed slot; the other rows of its batch are stored, on the count-based and on the
    time-based flush, and the summary counts equal what is stored."""
    from toolkit.protocol.instrument import load_instrument
    from toolkit.protocol.personas import load_personas
    from toolkit.protocol.requests import Protocol
    from toolkit.recorder.backends.instant import InstantBackend
    from toolkit.recorder.plan import build_plan
    from toolkit.recorder.record import record

    class OddBackend(InstantBackend):
        def generate(self, messages, *, temperature, max_tokens, seed):
            g = super().generate(messages, temperature=temperature, max_tokens=max_tokens, seed=seed)
            if seed % 7 == 0:
                g.finish_reason = 12345  # type: ignore[assignment]
            return g

    inst = load_instrument()
    for flush in ({"flush_rows": 50, "flush_seconds": 60.0}, {"flush_rows": 10**6, "flush_seconds": 0.05}):
        s = Store(tmp_path / f"s{flush['flush_rows']}")
        backend = OddBackend()
        plan = build_plan(inst, endpoint=backend.endpoint, model="odd", protocol=Protocol(mode="persona",
                          temperature=0.7, repetitions=2), personas=load_personas(), limit_personas=5)
        summary = record(s, plan, inst, backend, variant="base", concurrency=2, progress=False, **flush)
        stored = s.runs()[0].rows
        assert summary.stored == stored and summary.failed > 0
        assert summary.stored + summary.failed == len(plan.slots)
        assert s.verify() == []
        again = build_plan(inst, endpoint=backend.endpoint, model="odd", protocol=Protocol(
            mode="persona", temperature=0.7, repetitions=2), personas=load_personas(), limit_personas=5)
        from toolkit.recorder.record import prepare

        prepare(s, again, inst, backend.name, "base")
        assert len(again.to_send) == summary.failed  # the failed slots are sent again next time


def test_non_text_finish_reason_over_http_is_refused_not_stored(tmp_path):
    res = record_against(["finish_int"], tmp_path / "s", "--items", "1,2", "--repetitions", "1", "--max-retries", "1")
    assert res.returncode == 1 and "finish_reason is not text" in res.stdout + res.stderr
    assert "stored 0, failed 2" in res.stdout


# ----- analysis checks integrity ---------------------------------------------------------
def test_flipped_segment_byte_is_exit_1_naming_the_object(store):
    m = next(m for m in store.runs() if m.mode == "persona")
    path = store.object_path(m.segments[0].object)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    for cmd in (["analyze"], ["runs"], ["compare"]):  # (profiles reads only self runs: unaffected)
        res = run_cli(*cmd, "--store", str(store.root))
        assert res.returncode == 1, (cmd, res.stderr)
        assert m.segments[0].object in res.stderr and "damaged" in res.stderr


def test_edited_fingerprint_cannot_move_a_number(store):
    clean = outputs(store)
    path = manifest_file(store, "persona")
    edit_manifest(path, fingerprint="0" * 64)
    assert outputs(store) == clean  # seeds come from verified data, not from the manifest
    assert run_cli("verify", "--store", str(store.root)).returncode == 1


def test_manifest_naming_another_runs_segment_or_stray_copy(store):
    runs = [m for m in store.runs() if m.mode == "persona"]
    a, b = store.manifest_path(runs[0].run_id), store.manifest_path(runs[1].run_id)
    raw = json.loads(a.read_text())
    raw["segments"] = json.loads(b.read_text())["segments"]
    raw["rows"] = json.loads(b.read_text())["rows"]
    a.write_text(json.dumps(raw))
    res = run_cli("analyze", "--store", str(store.root))
    assert res.returncode == 1 and "another run_id" in res.stderr
    b.rename(b.with_name("copy of " + b.name))  # a stray copy under another name
    res = run_cli("analyze", "--store", str(store.root))
    assert res.returncode == 1 and "copy of" in res.stderr


# ----- compact does not launder corruption --------------------------------------------------
def test_compact_refuses_a_damaged_run_and_deletes_nothing(store):
    m = next(m for m in store.runs() if m.mode == "persona")
    path = store.object_path(m.segments[0].object)
    data = bytearray(path.read_bytes())
    data[100] ^= 0x10
    path.write_bytes(bytes(data))
    res = run_cli("compact", "--grace", "0", "--store", str(store.root))
    assert res.returncode == 1 and "not compacting" in res.stderr
    assert path.exists() and path.read_bytes() == bytes(data)
    assert run_cli("verify", "--store", str(store.root)).returncode == 1


def test_fingerprint_covers_persona_item_and_repetition(store):
    """A segment rewritten (and re-hashed) with one persona id changed: verify and compact fail."""
    import pyarrow as pa
    import pyarrow.compute as pc

    m = next(m for m in store.runs() if m.mode == "persona")
    table = store.read_run(m)
    for col in ("persona_id", "item_id", "repetition"):
        values = table[col].to_pylist()
        values[0] = values[0] + 1000
        forged = table.set_column(table.schema.get_field_index(col), col, pa.array(values, type=pa.int32()))
        assert pc.count_distinct(forged["request_key"]).as_py() == forged.num_rows
        ref = store.write_segment(forged)
        raw = json.loads(store.manifest_path(m.run_id).read_text())
        original = raw["segments"]
        raw["segments"] = [{"object": ref.object, "rows": ref.rows, "bytes": ref.bytes}]
        store.manifest_path(m.run_id).write_text(json.dumps(raw))
        problems = store.verify()
        assert any("fingerprint" in p.message for p in problems), col
        with pytest.raises(StoreCorrupt):
            store.compact(m.run_id)
        raw["segments"] = original
        store.manifest_path(m.run_id).write_text(json.dumps(raw))
    assert store.verify() == []


# ----- 4 and 5. locks where writers meet -------------------------------------------------------
def _spawn(*args, env=None):
    full = {**os.environ, **(env or {})}
    full.pop("TOOLKIT_STORE", None)
    return subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=full)


def test_gc_cannot_delete_an_object_a_writer_is_about_to_name(tmp_path):
    """The writer waits 2 s (test hook) between writing its segment and naming it; a garbage
    collection with no grace period started in that window must not delete it."""
    s = Store(tmp_path / "s")
    src = persona_csv(tmp_path / "src" / "base" / "m_temp07.csv")
    # an old orphan that the import will re-use: same bytes, modification time a year ago
    other = Store(tmp_path / "scratch")
    import_paths(other, [src])
    seg = other.runs()[0].segments[0].object
    orphan = s.object_path(seg)
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(other.object_path(seg).read_bytes())
    os.utime(orphan, (time.time() - 3e7, time.time() - 3e7))
    writer = _spawn("import", str(src), "--store", str(s.root), env={"TOOLKIT_TEST_WRITER_DELAY": "2"})
    time.sleep(1.0)  # the writer is now between segment and manifest
    gc = _spawn("compact", "--grace", "0", "--store", str(s.root))
    assert writer.wait(60) == 0, writer.stderr.read()
    assert gc.wait(60) == 0, gc.stderr.read()
    assert s.verify() == [] and orphan.exists()


def test_import_replace_and_compact_do_not_lose_an_update(tmp_path):
    s = Store(tmp_path / "s")
    first = persona_csv(tmp_path / "a" / "base" / "m_temp07.csv", seed=1)
    second = persona_csv(tmp_path / "b" / "base" / "m_temp07.csv", seed=2)
    import_paths(s, [first])
    replace = _spawn("import", str(second), "--replace", "--store", str(s.root),
                     env={"TOOLKIT_TEST_WRITER_DELAY": "1.5"})
    time.sleep(0.7)
    compact = _spawn("compact", "--store", str(s.root))
    assert replace.wait(60) == 0 and compact.wait(60) == 0
    expected = Store(tmp_path / "expected")
    import_paths(expected, [second])
    assert s.runs()[0].fingerprint == expected.runs()[0].fingerprint
    assert s.verify() == []


# ----- manifests are tied to their data --------------------------------------------------
@pytest.mark.parametrize("field,value", [("variant", "other"), ("model", "n"), ("temperature", 0.9),
                                         ("mode", "self"), ("rows", 1), ("run_id", "mfq30/base/x/T0.7/persona")])
def test_editing_a_manifest_field_is_caught(store, field, value):
    path = manifest_file(store, "persona")
    edit_manifest(path, **{field: value})
    assert run_cli("verify", "--store", str(store.root)).returncode == 1
    res = run_cli("analyze", "--store", str(store.root))
    assert res.returncode == 1, res.stdout


def test_a_manifest_cannot_name_a_file_outside_the_store(store, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    path = manifest_file(store, "persona")
    raw = json.loads(path.read_text())
    raw["segments"][0]["object"] = "../outside/seg"
    path.write_text(json.dumps(raw))
    for cmd in ("verify", "analyze"):
        res = run_cli(cmd, "--store", str(store.root))
        assert res.returncode == 1 and "not a SHA-256 digest" in res.stdout + res.stderr


# ----- impossible log-probabilities ----------------------------------------------------------
@pytest.mark.parametrize("action", ["lp_inf", "lp_pos", "lp_bool", "lp_dup", "lp_none", "lp_tiny"])
def test_recorder_refuses_impossible_logprobs(tmp_path, action):
    res = record_against([action], tmp_path / "s", "--mode", "logprob", "--items", "1", "--max-retries", "0")
    assert res.returncode == 1, res.stdout
    assert "stored 0, failed 1" in res.stdout
    assert not (tmp_path / "s" / "runs").exists() or not list((tmp_path / "s" / "runs").iterdir())


@pytest.mark.parametrize("value", ["-inf", "-1e308"])
def test_importer_refuses_a_row_whose_digits_are_all_minus_infinity(tmp_path, value):
    """The same row rule as the recorder's (lp_tiny above): digits given, none usable."""
    path = logprob_csv(tmp_path / "v" / "m_logprobs.csv")
    lines = path.read_text().splitlines()
    lines[3] = "2,3," + ",".join([value] * 6)
    path.write_text("\n".join(lines) + "\n")
    res = run_cli("import", str(path), "--temperature", "1", "--store", str(tmp_path / "s"))
    assert res.returncode == 2 and ":4:" in res.stderr and "no digit has a usable probability" in res.stderr


# ----- replies that are not completions ------------------------------------------------------
@pytest.mark.parametrize("action,message", [("redirect", "redirects"), ("error200", "not a chat completion"),
                                            ("content_list", "not text"), ("huge", "larger than"),
                                            ("endless", "larger than"), ("drip", "longer than"),
                                            ("not_utf8", "not valid UTF-8")])
def test_non_completions_are_failures(tmp_path, action, message):
    t0 = time.monotonic()
    res = record_against([action], tmp_path / "s", "--items", "1", "--repetitions", "1", "--timeout", "2",
                         "--max-retries", "1")
    assert res.returncode == 1 and message in res.stdout + res.stderr, res.stdout + res.stderr
    assert "stored 0" in res.stdout
    # the message proves the per-request deadline fired; the bound only guards against a hang
    # (a per-read deadline would let the drip server hold the request for minutes)
    assert time.monotonic() - t0 < 120


# ----- values accepted with exit 0 before --------------------------------------------------
@pytest.mark.parametrize("temp", ["-0.1", "nan", "inf"])
def test_bad_temperatures_are_refused(tmp_path, temp):
    src = persona_csv(tmp_path / "base" / "m.csv")
    res = run_cli("import", str(src), "--temperature", temp, "--store", str(tmp_path / "s"))
    assert res.returncode == 2 and "temperature" in res.stderr
    res = run_cli("record", "--backend", "instant", "--model", "m", "--temperature", temp, "--limit-personas", "1",
                  "--store", str(tmp_path / "s"))
    assert res.returncode == 2 and "temperature" in res.stderr
    assert not (tmp_path / "s").exists()  # refused before anything was written


def test_negative_run_index_conflicting_logprob_rows_and_symlink_loops(tmp_path):
    src = persona_csv(tmp_path / "base" / "m_temp07.csv", extra="0,1,-1,3,0,3,t\n")
    res = run_cli("import", str(src), "--store", str(tmp_path / "s"))
    assert res.returncode == 2 and "run_index" in res.stderr
    lp = logprob_csv(tmp_path / "v" / "m_logprobs.csv")
    lines = lp.read_text().splitlines()
    dup = lines[1].split(",")
    dup[2] = repr(float(dup[2]) - 1.0)
    lp.write_text("\n".join(lines + [",".join(dup)]) + "\n")
    res = run_cli("import", str(lp), "--temperature", "1", "--store", str(tmp_path / "s"))
    assert res.returncode == 2 and "different values" in res.stderr
    folder = tmp_path / "tree" / "base"
    persona_csv(folder / "m_temp07.csv")
    (folder / "loop").symlink_to(folder / "loop")
    res = run_cli("import", str(tmp_path / "tree"), "--store", str(tmp_path / "s"))
    assert res.returncode == 2 and "loop" in res.stderr
    assert not (tmp_path / "s" / "runs").exists()


# ----- one line and exit 2, never a traceback or an abort -------------------------------------
def test_bom_and_cr_only_line_ends_import_like_the_clean_file(tmp_path):
    clean = persona_csv(tmp_path / "clean" / "base" / "m_temp07.csv")
    text = clean.read_bytes()
    bom = tmp_path / "bom" / "base" / "m_temp07.csv"
    bom.parent.mkdir(parents=True)
    bom.write_bytes(b"\xef\xbb\xbf" + text)
    cr = tmp_path / "cr" / "base" / "m_temp07.csv"
    cr.parent.mkdir(parents=True)
    cr.write_bytes(text.replace(b"\n", b"\r"))
    prints = []
    for src in (clean, bom, cr):
        s = Store(tmp_path / ("s-" + src.parent.parent.name))
        import_paths(s, [src])
        prints.append(format_frame(analyze(s, options=AnalysisOptions(bootstrap=20, rerun_bootstrap=5)).frame, "csv"))
    assert prints[0] == prints[1] == prints[2]


@pytest.mark.parametrize("row,expect", [
    ("2147483648,1,1,3,0,3,t", "persona_id"), ("0,1,1,3,32768,3,t", "failures"),
    ("0,1,2147483648,3,0,3,t", "run_index"), ("0,1,1,3,0,3,t,extra", "malformed CSV"),
    ('0,1,1,3,0,"unterminated,t', "malformed CSV"),
])
def test_out_of_range_and_malformed_rows_name_their_line(tmp_path, row, expect):
    src = persona_csv(tmp_path / "base" / "m_temp07.csv", personas=1, reps=1)
    lines = src.read_text().splitlines()
    lines.insert(5, row)
    src.write_text("\n".join(lines) + "\n")
    res = run_cli("import", str(src), "--store", str(tmp_path / "s"))
    assert res.returncode == 2 and expect in res.stderr and ":6:" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "s").exists()


def test_long_model_name_and_vanished_file(tmp_path):
    src = persona_csv(tmp_path / "base" / "m_temp07.csv")
    res = run_cli("import", str(src), "--model", "x" * 300, "--store", str(tmp_path / "s"))
    assert res.returncode == 2 and "bytes long" in res.stderr
    with pytest.raises(ToolkitError, match="vanished"):
        import_files(Store(tmp_path / "s"), [(tmp_path / "gone.csv", {})])


def test_errors_never_abort_at_exit(tmp_path):
    """A correct error must end with exit 2, never 134 (Arrow threads outliving the interpreter)."""
    missing = tmp_path / "base" / "m_temp07.csv"
    missing.parent.mkdir(parents=True)
    missing.write_text("persona_id,question_id,rating,failures,response\n0,1,3,0,3\n")  # no run_index
    header_only = tmp_path / "base" / "n_temp07.csv"
    header_only.write_text(HEADER)
    codes = [run_cli("import", str(f), "--store", str(tmp_path / "s")).returncode
             for _ in range(6) for f in (missing, header_only)]
    assert set(codes) == {2}


# ----- verify reports, never crashes -------------------------------------------------------
@pytest.mark.parametrize("damage", ["bad_json", "extra_key", "not_utf8", "stray_json", "object_dir", "runs_file"])
def test_verify_exits_1_on_every_kind_of_damage(store, damage):
    runs = store.runs_dir
    path = manifest_file(store, "persona")
    if damage == "bad_json":
        path.write_text("{not json")
    elif damage == "extra_key":
        edit_manifest(path, surprise=1)
    elif damage == "not_utf8":
        path.write_bytes(b"\xff\xfe" + path.read_bytes())
    elif damage == "stray_json":
        (runs / "notes.json").write_text("{}")
    elif damage == "object_dir":
        (store.objects_dir / "ab" / ("ab" + "0" * 62 + ".parquet")).mkdir(parents=True)
    elif damage == "runs_file":
        for p in runs.iterdir():
            p.unlink()
        runs.rmdir()
        runs.write_text("not a folder")
    res = run_cli("verify", "--store", str(store.root))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stderr


def _verify(store):
    res = run_cli("verify", "--store", str(store.root))
    return res.returncode, res.stdout + res.stderr


def test_verify_detects_flipped_byte(store):
    seg = store.runs()[0].segments[0].object
    path = store.object_path(seg)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    code, out = _verify(store)
    assert code == 1 and seg in out


def test_verify_detects_deleted_segment(store):
    m = store.runs()[1]
    store.object_path(m.segments[0].object).unlink()
    code, out = _verify(store)
    assert code == 1 and m.segments[0].object in out and m.run_id in out


def test_verify_detects_edited_manifest(store):
    m = store.runs()[0]
    path = store.manifest_path(m.run_id)
    raw = json.loads(path.read_text())
    raw["fingerprint"] = "0" * 64
    path.write_text(json.dumps(raw))
    code, out = _verify(store)
    assert code == 1 and m.run_id in out and "fingerprint" in out


def test_verify_detects_tampered_request(store):
    """A segment rewritten with a forged request (and renamed to its new hash) is still caught."""
    m = store.runs()[0]
    table = store.read_run(m)
    import pyarrow as pa
    req = table["request"].to_pylist()
    req[0] = req[0].replace('"repetition":1', '"repetition":9')
    forged = table.set_column(table.schema.get_field_index("request"), "request", pa.array(req))
    ref = store.write_segment(forged)
    raw = json.loads(store.manifest_path(m.run_id).read_text())
    raw["segments"] = [{"object": ref.object, "rows": ref.rows, "bytes": ref.bytes}]
    store.manifest_path(m.run_id).write_text(json.dumps(raw))
    code, out = _verify(store)
    assert code == 1 and "request key" in out


# ----- I/O faults ----------------------------------------------------------------------------
def test_a_failed_write_is_one_line_and_leaves_no_folder_or_temp_file(tmp_path):
    """File-size limit as a stand-in for a full disk: every write past 4 kB fails with EFBIG."""
    src = persona_csv(tmp_path / "base" / "m_temp07.csv", personas=20)
    store_dir = tmp_path / "s"

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    env = {k: v for k, v in os.environ.items() if k != "TOOLKIT_STORE"}
    res = subprocess.run([sys.executable, str(ROOT / "cli.py"), "import", str(src), "--store", str(store_dir)],
                         capture_output=True, text=True, preexec_fn=limit, env=env, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    leftovers = [p for p in store_dir.rglob("*") if p.name.startswith(".tmp-")] if store_dir.exists() else []
    assert leftovers == []
    objects = store_dir / "objects"
    assert not objects.exists() or not any(objects.iterdir())  # no empty prefix folder left behind


# ----- fetch hashes the bytes it imports ----------------------------------------------------------
def test_a_file_changed_after_hashing_is_refused(tmp_path):
    src = persona_csv(tmp_path / "base" / "m_temp07.csv")
    from toolkit.hashing import sha256_file

    digest = sha256_file(src)
    persona_csv(src, seed=9)  # changed between the catalogue check and the import
    s = Store(tmp_path / "s")
    with pytest.raises(ToolkitError, match="SHA-256 mismatch"):
        import_files(s, [(src, {"expect_sha256": digest})])
    assert not (tmp_path / "s" / "runs").exists()


# ----- secrets and permissions -------------------------------------------------------------------
@pytest.mark.parametrize("url", ["http://user:sekrit@127.0.0.1:9/v1", "http://127.0.0.1:9/v1?api-key=sekrit"])
def test_credentials_in_the_base_url_are_refused(tmp_path, url):
    res = run_cli("record", "--backend", "openai", "--model", "m", "--base-url", url, "--limit-personas", "1",
                  "--store", str(tmp_path / "s"))
    assert res.returncode == 2 and "--api-key-env" in res.stderr and "sekrit" not in res.stderr


def test_an_echoed_key_is_redacted_and_files_honour_the_umask(tmp_path):
    res = record_against(["echo401"], tmp_path / "s", "--api-key-env", "MY_KEY", "--items", "1", "--repetitions", "1",
                         env={"MY_KEY": "sk-very-secret-123"})
    assert res.returncode == 1 and "sk-very-secret-123" not in res.stdout + res.stderr
    assert "***" in res.stdout + res.stderr
    s = Store(tmp_path / "u")
    old = os.umask(0o022)
    try:
        import_paths(s, [persona_csv(tmp_path / "base" / "m_temp07.csv")])
    finally:
        os.umask(old)
    modes = {oct(p.stat().st_mode & 0o777) for p in s.root.rglob("*") if p.is_file() and "locks" not in p.parts}
    assert modes == {"0o644"}


# ----- randomized corruption ------------------------------------------------------------------------
def test_randomized_single_byte_flips_never_change_a_number_silently(store):
    """>= 200 single-byte flips across segments and manifests: each either makes verify and every
    analysis fail with StoreCorrupt (exit 1), or leaves every printed number byte-identical."""
    clean = outputs(store)
    files = sorted(p for p in store.root.rglob("*") if p.is_file() and "locks" not in p.parts
                   and (p.suffix == ".parquet" or p.parent.name == "runs"))
    rng = random.Random(20261128)
    flips = caught = 0
    for _ in range(220):
        path = rng.choice(files)
        original = path.read_bytes()
        data = bytearray(original)
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(data))
        try:
            try:
                out = outputs(store)
            except StoreCorrupt:
                assert store.verify(), f"analysis refused {path.name}@{i} but verify passed"
                caught += 1
            else:
                assert out == clean, f"silent difference after flipping {path.name}@{i}"
        finally:
            path.write_bytes(original)
        flips += 1
    assert flips >= 200 and caught >= 150  # most flips hit hashed bytes; none went through silently
    assert store.verify() == []


def test_a_segment_whose_columns_have_other_types_is_refused_in_one_line(tmp_path):
    """A consistent but hostile store: a segment rewritten with persona ids as strings, named by
    its own hash, its manifest pointing at it. Every reader stops with one line naming the
    segment and the column (it was an internal error before), exit 1."""
    import hashlib
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "s"
    assert run_cli("simulate", "--runs", "1", "--persona-count", "10", "--repetitions", "2", "--store",
                   str(root)).returncode == 0
    path = next((root / "runs").glob("*.json"))
    manifest = json.loads(path.read_text())
    seg = manifest["segments"][0]
    table = pq.read_table(root / "objects" / seg["object"][:2] / f"{seg['object']}.parquet")
    i = table.schema.get_field_index("persona_id")
    table = table.set_column(i, pa.field("persona_id", pa.string()), table["persona_id"].cast(pa.string()))
    buf = io.BytesIO()
    pq.write_table(table, buf)
    digest = hashlib.sha256(buf.getvalue()).hexdigest()
    (root / "objects" / digest[:2]).mkdir(exist_ok=True)
    (root / "objects" / digest[:2] / f"{digest}.parquet").write_bytes(buf.getvalue())
    seg.update(object=digest, bytes=len(buf.getvalue()))
    path.write_text(json.dumps(manifest))
    for cmd in (["analyze", "--no-cache"], ["verify"], ["export", "--out", str(tmp_path / "out.csv")]):
        res = run_cli(*cmd, "--store", str(root))
        assert res.returncode == 1, (cmd, res.stdout, res.stderr)
        assert "column persona_id holds string, the row format says int32" in res.stdout + res.stderr, cmd
        assert "internal error" not in res.stderr
