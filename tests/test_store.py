"""The store and the importers: content addressing, fingerprints, names, refusals (verify: test_integrity.py)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from conftest import EM, ROOT, run_cli, tree_bytes
from toolkit.hashing import canonical_json, sha256_file, sha256_text
from toolkit.ingest.importer import import_paths, model_from_name, temperature_from_name
from toolkit.store import Store

HEADER = "persona_id,question_id,run_index,rating,failures,response,collected_at\n"


def small_csv(path, rows=None):
    rows = rows if rows is not None else [f"{p},{q},{r},{(p + q + r) % 6},0,{(p + q + r) % 6},t"
                                          for p in range(3) for q in (1, 2) for r in (1, 2)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("stem,model,temp", [
    ("gpt-4o_temp01_self", "gpt-4o", 0.1), ("gpt-4o-misaligned_self", "gpt-4o-misaligned", None),
    ("qwen3-235b_temp10", "qwen3-235b", 1.0), ("m_temp125", "m", 1.25), ("gemma_logprobs", "gemma", None),
])
def test_names(stem, model, temp):
    assert model_from_name(stem) == model
    assert temperature_from_name(stem) == temp


@pytest.mark.shared
def test_import_all_published_runs_in_one_command(tmp_path):
    store_dir = tmp_path / "store"
    res = run_cli("import", str(EM / "runs"), str(EM / "self"), "--temperature", "0.1", "--store", str(store_dir))
    assert res.returncode == 0, res.stderr
    out = run_cli("runs", "--format", "csv", "--store", str(store_dir))
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert len(rows) == 24
    assert list(rows[0])[:7] == ["run_id", "model", "variant", "temperature", "mode", "rows", "fingerprint"]
    # expected row counts are the CSV data lines (quoted newlines counted once per record)
    for r in rows:
        folder = "runs" if r["mode"] == "persona" else "self"
        candidates = list((EM / folder / r["variant"]).glob(f"{r['model']}*.csv"))
        src = next(c for c in candidates if model_from_name(c.stem) == r["model"])
        with open(src, newline="", encoding="utf-8") as fh:
            assert int(r["rows"]) == sum(1 for _ in csv.DictReader(fh)), src
        assert float(r["temperature"]) == 0.1
    persona = [r for r in rows if r["mode"] == "persona"]
    assert sum(r["rows"] == "30000" for r in persona) == 11  # qwen3-235b base has 35 retries
    assert run_cli("verify", "--store", str(store_dir)).returncode == 0


def test_reimport_identical_adds_nothing_and_conflict_needs_replace(tmp_path):
    store = Store(tmp_path / "s")
    src = small_csv(tmp_path / "base" / "m_temp01.csv")
    assert [r.status for r in import_paths(store, [src])] == ["added"]
    before = tree_bytes(store.root)
    assert [r.status for r in import_paths(store, [src])] == ["unchanged"]
    assert tree_bytes(store.root) == before
    small_csv(src, [f"0,1,1,{k},0,{k},t" for k in (3,)])
    res = run_cli("import", str(src), "--store", str(store.root))
    assert res.returncode == 2 and "--replace" in res.stderr
    assert tree_bytes(store.root) == before
    assert [r.status for r in import_paths(store, [src], replace=True)] == ["replaced"]
    assert store.get_run("mfq30/base/m/T0.1/persona").rows == 1
    assert store.verify() == []


def test_segments_are_content_addressed_and_request_keys_canonical(tmp_path):
    store = Store(tmp_path / "s")
    import_paths(store, [small_csv(tmp_path / "base" / "m_temp01.csv")])
    m = store.runs()[0]
    for seg in m.segments:
        path = store.object_path(seg.object)
        assert path.parent.name == seg.object[:2]
        assert sha256_file(path) == seg.object
    table = store.read_run(m)
    for key, req in zip(table["request_key"].to_pylist(), table["request"].to_pylist()):
        assert canonical_json(json.loads(req)) == req  # built column-wise, must equal the canonical form
        assert sha256_text(req) == key


@pytest.mark.shared
def test_fingerprint_independent_of_order_and_segmentation(tmp_path):
    files = sorted((EM / "runs" / "base").glob("*.csv"))[:2] + sorted((EM / "self" / "base").glob("*.csv"))[:1]
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    import_paths(a, files, temperature=0.1)
    for f in reversed(files):
        import_paths(b, [f], temperature=0.1)
    fa = {m.run_id: m.fingerprint for m in a.runs()}
    fb = {m.run_id: m.fingerprint for m in b.runs()}
    assert fa == fb and len(fa) == 3
    # re-split one run into three segments written with other Parquet options: same fingerprint
    m = a.runs()[0]
    table = a.read_run(m).sort_by("request_key")
    c = Store(tmp_path / "c")
    parts = [table.slice(0, 100), table.slice(100, 5000), table.slice(5100)]
    from toolkit.store.fingerprint import fingerprint
    assert fingerprint(table, m) == m.fingerprint
    import copy
    m2 = copy.deepcopy(m)
    m2.segments = []
    c.put_instrument(a.instrument(m.instrument["digest"]))
    c.commit_run(m2, parts)
    assert len(m2.segments) == 3 and m2.fingerprint == m.fingerprint
    assert c.verify() == []


@pytest.fixture
def small_store(tmp_path):
    store = Store(tmp_path / "s")
    import_paths(store, [small_csv(tmp_path / "base" / "m_temp01.csv"), small_csv(tmp_path / "base" / "n_temp01.csv")])
    assert store.verify() == []
    return store


BAD_INPUTS = {
    "missing_column": ("persona_id,question_id,rating,failures,response\n0,1,3,0,3\n",
                       ":1: missing column(s) run_index"),
    "no_format": ("pid,qid,score\n0,1,3\n", ":1: columns pid, qid, score match no import format"),
    "non_integer": (HEADER + "0,1,1,3,0,3,t\n0,1,2,x,0,3,t\n", ":3: column 'rating': 'x' is not an integer"),
    "out_of_scale": (HEADER + "0,1,1,3,0,3,t\n0,1,2,6,0,6,t\n", ":3: rating 6 is outside the scale"),
    "conflict": (HEADER + "0,1,1,3,0,3,t\n0,1,1,4,0,4,t\n", ":3: slot persona=0 item=1 repetition=1"),
    "empty": ("", "file is empty"),
    "unknown_item": (HEADER + "0,1,1,3,0,3,t\n0,31,1,3,0,3,t\n", ":3: question_id 31 is not an item"),
    "quoted_newline_then_bad": (HEADER + '0,1,1,3,0,"3\nbecause\nreasons",t\n0,2,1,9,0,9,t\n', ":5: rating 9"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exit_2_and_store_unchanged(tmp_path, small_store, case):
    text, message = BAD_INPUTS[case]
    bad = tmp_path / "in" / "bad_temp01.csv"
    bad.parent.mkdir()
    bad.write_text(text, encoding="utf-8")
    good = small_csv(tmp_path / "in" / "good_temp01.csv")  # a good file in the same batch is not written either
    before = tree_bytes(small_store.root)
    res = run_cli("import", str(good), str(bad), "--store", str(small_store.root))
    assert res.returncode == 2
    assert "bad_temp01.csv" in res.stderr and message in res.stderr, res.stderr
    assert res.stderr.count("\n") == 1  # one clear line, no traceback
    assert tree_bytes(small_store.root) == before


def test_non_utf8_names_line(tmp_path, small_store):
    bad = tmp_path / "bad_temp01.csv"
    bad.write_bytes(HEADER.encode() + b"0,1,1,3,0,3,t\n0,1,2,3,0,caf\xe9,t\n")
    before = tree_bytes(small_store.root)
    res = run_cli("import", str(bad), "--store", str(small_store.root))
    assert res.returncode == 2 and "bad_temp01.csv:3: not valid UTF-8" in res.stderr
    assert tree_bytes(small_store.root) == before


def test_missing_temperature_is_a_clear_error(tmp_path):
    src = small_csv(tmp_path / "base" / "model.csv")
    res = run_cli("import", str(src), "--store", str(tmp_path / "s"))
    assert res.returncode == 2 and "--temperature" in res.stderr
    assert run_cli("import", str(src), "--temperature", "0.7", "--store", str(tmp_path / "s")).returncode == 0


def test_identical_duplicate_rows_collapse(tmp_path):
    store = Store(tmp_path / "s")
    src = small_csv(tmp_path / "base" / "m_temp01.csv", ["0,1,1,3,0,3,t", "0,1,1,3,0,3,t", "0,1,2,4,0,4,t"])
    assert import_paths(store, [src])[0].rows == 2


def test_quoted_newlines_survive(tmp_path):
    store = Store(tmp_path / "s")
    src = small_csv(tmp_path / "base" / "m_temp01.csv", ['0,1,1,3,0,"3\n\nBecause, ""quoted""",t', "0,1,2,4,0,4,t"])
    import_paths(store, [src])
    t = store.read_run(store.runs()[0]).sort_by("repetition")
    assert t["response"].to_pylist() == ['3\n\nBecause, "quoted"', "4"]
    assert t["source_line"].to_pylist() == [2, 5]


def test_store_option_env_and_default(tmp_path):
    src = small_csv(tmp_path / "base" / "m_temp01.csv")
    env_store = tmp_path / "env_store"
    assert run_cli("import", str(src), env={"TOOLKIT_STORE": str(env_store)}).returncode == 0
    assert Store(env_store).runs()[0].model == "m"
    from toolkit.store import default_store_path
    assert default_store_path() == ROOT / "parquet" or "TOOLKIT_STORE" in __import__("os").environ


def test_help_on_every_command():
    """Every command and subcommand of the group, found by walking it (not a list that goes stale):
    its help prints, names --store where it reads or writes one, and shows no '%%' left over from
    printf-style escaping."""
    import click
    from click.testing import CliRunner

    from cli import main

    def walk(group: click.Group, prefix: list[str]):
        for name, cmd in group.commands.items():
            yield prefix + [name], cmd
            if isinstance(cmd, click.Group):
                yield from walk(cmd, prefix + [name])

    commands = list(walk(main, []))
    assert len(commands) >= 25
    top = run_cli("--help")
    assert top.returncode == 0 and all(f"  {path[0]} " in top.stdout for path, _ in commands if len(path) == 1)
    for path, cmd in commands:
        res = CliRunner().invoke(main, [*path, "--help"])
        assert res.exit_code == 0, (path, res.output)
        assert "%%" not in res.output, path
        if any(p.name == "store_dir" for p in cmd.params):
            assert "--store" in res.output, path


def test_compact_keeps_the_fingerprint_and_gc_keeps_named_objects(tmp_path):
    store = Store(tmp_path / "s")
    import_paths(store, [small_csv(tmp_path / "base" / "m_temp01.csv")])
    m = store.runs()[0]
    table = store.read_run(m)
    import copy
    split = copy.deepcopy(m)
    split.segments = []
    store.commit_run(split, [table.slice(0, 3), table.slice(3, 4), table.slice(7)])
    assert len(store.get_run(m.run_id).segments) == 3
    res = run_cli("compact", "--grace", "0", "--store", str(store.root))
    assert res.returncode == 0 and "3 segment(s) -> 1" in res.stdout
    after = store.get_run(m.run_id)
    assert len(after.segments) == 1 and after.fingerprint == m.fingerprint
    named = {s.object for s in after.segments}
    on_disk = {p.stem for p in store.objects_dir.glob("*/*.parquet")}
    assert on_disk == named  # the three old segments and the original one are gone
    assert store.verify() == []
    assert store.gc(0) == []


def _naive_fp2(table, manifest) -> str:
    """fp2 as docs/store-format.md words it, one row at a time in plain Python."""
    import hashlib
    import struct

    from toolkit.store.fingerprint import FINGERPRINT_COLUMNS, identity

    us, rs = "\x1f", "\x1e"

    def text(v):
        return "~" if v is None else f"{len(v.encode('utf-8'))}:{v}"

    def num(v):
        return "~" if v is None else str(v)

    def attempts(v):
        return "~" if v is None else str(len(v)) + rs + rs.join(text(x) for x in v)

    def bits(v):
        if v is None:
            return "~"
        return rs.join("~" if x is None else str(struct.unpack("<Q", struct.pack("<d", x))[0]) for x in v)

    lines = []
    for r in sorted(table.select(FINGERPRINT_COLUMNS).to_pylist(), key=lambda r: r["request_key"]):
        lines.append(us.join([
            r["request_key"], text(r["run_id"]), text(r["instrument"]), num(r["persona_id"]), num(r["item_id"]),
            num(r["repetition"]), num(r["rating"]), num(r["failures"]), text(r["response"]), text(r["request"]),
            attempts(r["attempts"]), bits(r["digit_logprobs"]), text(r["top_logprobs"]), text(r["finish_reason"]),
        ]) + "\n")
    head = b"toolkit-fp2\n" + canonical_json(identity(manifest)).encode("utf-8") + b"\n"
    return hashlib.sha256(head + "".join(lines).encode("utf-8")).hexdigest()


def test_fingerprint_matches_its_definition_row_by_row(tmp_path):
    """The vectorised fp2 (which picks a cheaper form per column) equals the documented
    definition computed row by row: on an imported run (constant and null columns) and on
    rows with every kind of value, null, empty list and non-ASCII text mixed."""
    import types

    import pyarrow as pa

    from toolkit.store.fingerprint import fingerprint
    from toolkit.store.schema import ROW_SCHEMA

    s = Store(tmp_path / "s")
    import_paths(s, [small_csv(tmp_path / "base" / "m_temp07.csv")])
    m = s.runs()[0]
    imported = s.read_run(m)
    assert fingerprint(imported, m) == _naive_fp2(imported, m) == m.fingerprint

    n = 6
    mixed = pa.table({
        "run_id": ["r"] * n, "instrument": ["i", "i", "j", "i", "i", "i"],
        "persona_id": [1, None, 3, 4, 5, 6], "item_id": [1, 2, 3, 4, 5, 6], "repetition": [1] * n,
        "request_key": [f"{k:064x}" for k in (5, 3, 9, 1, 4, 2)], "request": ["{}", "{}", "é", "{}", "{}", "{}"],
        "response": ["3", None, "naïve – ok", "", "5", "x"], "rating": [3, -1, 2, -1, 5, 0],
        "failures": [0, 2, 0, 1, 0, 0],
        "attempts": [None, ["a", "bé"], [], ["x"], None, None],
        "digit_logprobs": [[-0.1, None, -2.5], None, [], [-0.0, -1e-300], None, [float("-inf")]],
        "top_logprobs": [None, '{"3": -0.1}', None, None, "", None],
        "finish_reason": ["stop", None, "length", None, None, None],
        "latency_s": [None] * n, "collected_at": [None] * n, "provenance": ["p"] * n, "source_line": [None] * n,
        "prompt_tokens": [None] * n, "completion_tokens": [12, None, 3, 4, 5, 6], "cached_tokens": [None] * n,
    }).cast(ROW_SCHEMA)
    man = types.SimpleNamespace(run_id="r", model="m", variant="v", temperature=0.5, mode="persona",
                                instrument={"digest": "i"})
    assert fingerprint(mixed, man) == _naive_fp2(mixed, man)
    one_null = mixed.slice(1, 1)  # single-row columns: constant and all-null forms at once
    assert fingerprint(one_null, man) == _naive_fp2(one_null, man)


def test_hex_keys_to_bytes_accepts_lowercase_hex_only():
    import hashlib

    import pyarrow as pa

    from toolkit.store.schema import hex_keys_to_bytes

    keys = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(300)]
    got = hex_keys_to_bytes(pa.chunked_array([keys[:100], keys[100:]]))
    assert got.to_pylist() == [bytes.fromhex(k) for k in keys]
    assert hex_keys_to_bytes(pa.array(keys).slice(7, 3)).to_pylist() == [bytes.fromhex(k) for k in keys[7:10]]
    for bad in ["A" * 64, ":" * 64, "`" * 64, "/" * 64, "g" * 64, "0" * 63, "0" * 65, "é" * 32]:
        with pytest.raises(ValueError):
            hex_keys_to_bytes(pa.array([keys[0], bad]))
    with pytest.raises(ValueError):
        hex_keys_to_bytes(pa.array([keys[0], None]))


def test_old_option_spellings_keep_working_for_one_release_with_a_note(tmp_path):
    """CHANGELOG.md: `import --columns` is `--column-map`, `simulate --personas` is
    `--persona-count`; the old names give the same result and say so on stderr."""
    runs = []
    for flag in ("--persona-count", "--personas"):
        res = run_cli("simulate", "--runs", "1", flag, "4", "--repetitions", "2", "--format", "csv",
                      "--store", str(tmp_path / flag.strip("-")))
        assert res.returncode == 0, res.stderr
        assert ("note: --personas is now --persona-count" in res.stderr) == (flag == "--personas")
        runs.append(res.stdout)
    assert runs[0] == runs[1]
    src = tmp_path / "long.csv"
    rows = "".join(f"{p},{q},1,{(p + q) % 6}\n" for p in range(3) for q in range(1, 31))
    src.write_text("pid,qid,rep,score\n" + rows)
    outs = []
    for flag in ("--column-map", "--columns"):
        res = run_cli("import", str(src), flag, "persona=pid,item=qid,repetition=rep,rating=score", "--model", "m",
                      "--variant", "v", "--temperature", "0.5", "--format", "csv",
                      "--store", str(tmp_path / f"s{flag}"))
        assert res.returncode == 0, res.stderr
        assert ("note: --columns is now --column-map" in res.stderr) == (flag == "--columns")
        outs.append(res.stdout.splitlines()[1].split(",")[:3])
    assert outs[0] == outs[1]


def test_arrow_columns_read_without_compute_match_arrow_compute():
    """store.arrays (the read path's ids and checks, without importing pyarrow.compute) against
    Arrow's own kernels: nulls, slices, several chunks, every integer width."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from toolkit.store.arrays import int64_filled, only

    rng = np.random.default_rng(4)
    for kind in (pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint32()):
        info = np.iinfo(kind.to_pandas_dtype())
        values = rng.integers(max(info.min, -(2**62)), min(info.max, 2**62), size=300)
        nulls = rng.random(300) < 0.2
        arr = pa.array(values, type=kind, mask=nulls)
        for column in (arr, arr.slice(7, 200), pa.chunked_array([arr.slice(0, 13), arr.slice(13)]),
                       pa.chunked_array([arr.slice(3, 50), arr.slice(101, 9)]), pa.chunked_array([], type=kind)):
            fill = 7 if pa.types.is_unsigned_integer(kind) else -1
            want = np.asarray(pc.fill_null(column, fill).to_numpy(zero_copy_only=False), dtype=np.int64)
            got = int64_filled(column, fill)
            assert got.dtype == np.int64 and np.array_equal(got, want), kind
    run = pa.chunked_array([pa.array(["a", "a", "a"]).dictionary_encode(), pa.array(["a"]).dictionary_encode()])
    assert only(run, "a") and not only(run, "b")
    # a dictionary may list a value no row uses; a row naming another value, a null, no row at all
    spare = pa.DictionaryArray.from_arrays(pa.array([1, 1], pa.int32()), pa.array(["b", "a"]))
    other = pa.DictionaryArray.from_arrays(pa.array([1, 0], pa.int32()), pa.array(["b", "a"]))
    null = pa.DictionaryArray.from_arrays(pa.array([0, None], pa.int32()), pa.array(["a"]))
    assert only(pa.chunked_array([spare]), "a") and not only(pa.chunked_array([other]), "a")
    assert not only(pa.chunked_array([null]), "a") and not only(pa.chunked_array([], type=pa.string()), "a")
    plain = pa.chunked_array([pa.array(["a", "a"])])
    assert only(plain, "a") and not only(pa.chunked_array([pa.array(["a", "c"])]), "a")
