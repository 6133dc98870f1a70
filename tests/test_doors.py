"""Nothing lost, nothing wrong, at every door: each writing command's output rule, each JSON
input's schema, the bounded bundle reader, the manifest seal, the recorder's preflight. Every
case drives the real CLI on real files (hostile ZIPs and edited JSON built here)."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, run_cli, tree_bytes
from http_servers import Behaviour, start


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """A store with two simulated runs (treat as read-only)."""
    store = tmp_path_factory.mktemp("small") / "store"
    res = run_cli("simulate", "--runs", "2", "--persona-count", "5", "--repetitions", "2", "--store", str(store))
    assert res.returncode == 0, res.stderr
    return store


@pytest.fixture(scope="module")
def exported(small, tmp_path_factory) -> Path:
    """One of those runs as a published-layout CSV."""
    out = tmp_path_factory.mktemp("exported")
    assert run_cli("export", "--out", str(out), "--store", str(small)).returncode == 0
    return sorted(out.rglob("*.csv"))[0]


def one_line(res) -> str:
    """The one line a refusal prints on stderr (``verify`` names the problem on stdout first)."""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    return res.stdout.strip() + " " + lines[0] if res.stdout.startswith("PROBLEM") else lines[0]


# ----- user-chosen names never collide with the store's own ------------------------------------
@pytest.mark.parametrize("name", [".tmp-x", ".hidden"])
def test_an_instrument_named_like_a_store_temporary_is_refused(exported, tmp_path, name):
    inst = json.loads((ROOT / "toolkit" / "instruments" / "mfq30.json").read_text())
    inst["name"] = name
    (tmp_path / "inst.json").write_text(json.dumps(inst))
    store = tmp_path / "s"
    res = run_cli("import", str(exported), "--instrument", str(tmp_path / "inst.json"), "--store", str(store))
    assert res.returncode == 2 and "inst.json" in one_line(res) and "starts with '.'" in res.stderr
    assert not (store / "runs").exists() or not any((store / "runs").iterdir())


@pytest.mark.parametrize("option", ["--model", "--variant"])
def test_a_model_or_variant_named_like_a_store_temporary_is_refused(exported, tmp_path, option):
    res = run_cli("import", str(exported), option, ".tmp-run", "--store", str(tmp_path / "s"))
    assert res.returncode == 2 and "starts with '.'" in one_line(res)
    assert not (tmp_path / "s" / "runs").exists() or not any((tmp_path / "s" / "runs").iterdir())


# ----- one output-path rule --------------------------------------------------------------------
def test_report_replaces_its_own_earlier_report_but_nothing_else(small, tmp_path):
    out = tmp_path / "rep"
    assert run_cli("report", "--out", str(out), "--store", str(small)).returncode == 0
    marker = json.loads((out / ".toolkit-report").read_text())
    assert "index.html" in marker["files"]
    assert run_cli("report", "--out", str(out), "--store", str(small)).returncode == 0  # its own files: replaced
    (out / "important.txt").write_text("mine")
    (out / "mydata").mkdir()
    (out / "mydata" / "notes.txt").write_text("mine too")
    before = tree_bytes(out)
    res = run_cli("report", "--out", str(out), "--store", str(small))
    assert res.returncode == 2 and "did not write" in one_line(res)
    assert tree_bytes(out) == before


def test_a_copied_report_marker_does_not_license_deleting_a_folder(small, tmp_path):
    out = tmp_path / "thesis"
    out.mkdir()
    (out / ".toolkit-report").write_text("toolkit 0.1.0 report\n")  # a marker of the older kind, copied
    (out / "thesis.tex").write_text("\\documentclass{article}")
    res = run_cli("report", "--out", str(out), "--store", str(small))
    assert res.returncode == 2 and "thesis.tex" in one_line(res)
    assert (out / "thesis.tex").read_text() == "\\documentclass{article}"


@pytest.mark.parametrize("args", [["report", "--out", "{s}/runs/evil.json"], ["export", "--out", "{s}/runs"],
                                  ["export", "--out", "{s}/objects/zz", "--format", "parquet"],
                                  ["report", "--out", "{s}"], ["bundle", "--out", "{s}/objects/b.zip"],
                                  ["claims", "draft", "--out", "{s}/instruments/c.json"]])
def test_no_command_writes_inside_a_store(small, tmp_path, args):
    store = tmp_path / "s"
    run_cli("simulate", "--runs", "1", "--persona-count", "3", "--repetitions", "2", "--store", str(store))
    before = tree_bytes(store)
    res = run_cli(*[a.format(s=store) for a in args], "--store", str(small))
    assert res.returncode == 2 and "inside the store" in one_line(res)
    assert tree_bytes(store) == before
    assert run_cli("verify", "--store", str(store)).returncode == 0


def test_claims_draft_replaces_a_claims_file_but_not_another_file(small, tmp_path):
    claims = tmp_path / "claims.json"
    assert run_cli("claims", "draft", "--out", str(claims), "--store", str(small)).returncode == 0
    assert run_cli("claims", "draft", "--out", str(claims), "--store", str(small)).returncode == 0
    other = tmp_path / "paper.json"
    other.write_text('{"title": "mine"}')
    res = run_cli("claims", "draft", "--out", str(other), "--store", str(small))
    assert res.returncode == 2 and "not written by this command" in one_line(res)
    assert other.read_text() == '{"title": "mine"}'


# ----- claims files: a typed schema ------------------------------------------------------------
@pytest.fixture(scope="module")
def drafted(small, tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("claims") / "claims.json"
    assert run_cli("claims", "draft", "--out", str(path), "--store", str(small)).returncode == 0
    return json.loads(path.read_text())


def _claims_with(drafted: dict, tmp_path: Path, **changes) -> Path:
    doc = json.loads(json.dumps(drafted))
    claim = next(c for c in doc["claims"] if c["metric"] == "S")
    claim.update({"printed": "0.10", **changes})
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(doc, allow_nan=True))
    return path


@pytest.mark.parametrize("changes", [{"tolerance": float("inf")}, {"tolerance": 1e300}, {"tolerance": True},
                                     {"tolerance": "0.5"}, {"tolerance": float("nan")}, {"tolerance": -0.01},
                                     {"rel_tolerance": 1e6}, {"within_se": 1e9}, {"printed": "nan"},
                                     {"printed": "inf"}, {"printed": "1e999"}, {"temperature": "hot"},
                                     {"models": "gpt"}, {"surprise": 1}])
def test_a_claim_that_would_pass_anything_or_is_malformed_is_refused_by_id(drafted, small, tmp_path, changes):
    path = _claims_with(drafted, tmp_path, **changes)
    res = run_cli("check", "--claims", str(path), "--store", str(small))
    assert res.returncode == 2, res.stdout + res.stderr
    line = one_line(res)
    assert "edited.json" in line and "claim #" in line


def test_a_wide_tolerance_with_its_reason_is_taken_and_a_wrong_number_fails(drafted, small, tmp_path):
    wide = _claims_with(drafted, tmp_path, tolerance=1.0, reason="order of magnitude only")
    assert run_cli("check", "--claims", str(wide), "--store", str(small)).returncode == 0
    strict = _claims_with(drafted, tmp_path)
    res = run_cli("check", "--claims", str(strict), "--store", str(small))
    assert res.returncode == 1 and "FAIL" in res.stdout


def test_deeply_nested_claims_and_display_names_of_the_wrong_type_are_one_line(small, tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"format": "toolkit-claims/1", "claims": [], "display_names": ["a"]}))
    for path in (deep, names):
        res = run_cli("check", "--claims", str(path), "--store", str(small))
        assert res.returncode == 2 and path.name in one_line(res)


# ----- bundles: one bounded reader -------------------------------------------------------------
@pytest.fixture(scope="module")
def bundle(small, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "b.zip"
    assert run_cli("bundle", "--out", str(out), "--store", str(small)).returncode == 0
    return out


def _rebuild(src: Path, dst: Path, *, index_edit=None, extra: dict[str, bytes] | None = None,
             compress: set[str] = frozenset()) -> Path:
    """A copy of a bundle with its index edited and members added, re-hashed so that only the
    change under test is wrong."""
    with zipfile.ZipFile(src) as zf:
        files = {n: zf.read(n) for n in zf.namelist()}
    index = json.loads(files.pop("bundle.json"))
    for name, data in (extra or {}).items():
        files[name] = data
        index["members"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    from toolkit.hashing import canonical_json

    index["members"] = dict(sorted(index["members"].items()))
    index["digest"] = hashlib.sha256(canonical_json(index["members"]).encode()).hexdigest()
    if index_edit:
        index_edit(index)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("bundle.json", json.dumps(index))
        for name, data in sorted(files.items()):
            zf.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED if name in compress else zipfile.ZIP_STORED)
    dst.write_bytes(buf.getvalue())
    return dst


def _every_reader(path: Path, tmp_path: Path) -> list:
    return [run_cli("verify", str(path)), run_cli("analyze", "--store", str(path)),
            run_cli("import", str(path), "--store", str(tmp_path / "into")),
            run_cli("report", "--store", str(path), "--out", str(tmp_path / "rep"))]


def test_a_zip_bomb_member_is_refused_by_every_reader_before_it_is_unpacked(bundle, tmp_path):
    zeros = bytes(64 << 20)  # deflates to about 64 KB
    bomb = _rebuild(bundle, tmp_path / "bomb.zip", extra={"store/objects/00/zeros.parquet": zeros},
                    compress={"store/objects/00/zeros.parquet"})
    assert bomb.stat().st_size < 2 << 20
    for res in _every_reader(bomb, tmp_path):
        assert res.returncode == 1 and "compressed" in one_line(res), res.stderr
    assert not (tmp_path / "rep").exists() and not (tmp_path / "into" / "runs").exists()


def test_a_member_no_run_names_is_refused(bundle, tmp_path):
    extra = _rebuild(bundle, tmp_path / "extra.zip", extra={"store/objects/ab/" + "ab" * 32 + ".parquet": b"x" * 100})
    for res in _every_reader(extra, tmp_path):
        assert res.returncode == 1 and "named by no run" in one_line(res), res.stderr


def test_a_false_runs_list_in_the_index_is_refused(bundle, tmp_path):
    def lie(index):
        index["runs"] = index["runs"][:1] + ["mfq30/base/invented/T0.7/persona"]

    res = run_cli("verify", str(_rebuild(bundle, tmp_path / "lie.zip", index_edit=lie)))
    assert res.returncode == 1 and "runs list" in res.stdout + res.stderr


@pytest.mark.parametrize("edit", ["nested", "int_meta", "encrypted"])
def test_hostile_bundle_indexes_end_in_one_line(bundle, tmp_path, edit):
    path = tmp_path / f"{edit}.zip"
    if edit == "nested":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("bundle.json", '{"format": "toolkit-bundle/1", "members": ' + "[" * 50_000 + "]" * 50_000 + "}")
    elif edit == "int_meta":
        def intify(index):
            first = next(iter(index["members"]))
            index["members"][first] = 7
        _rebuild(bundle, path, index_edit=intify)
    else:
        data = bytearray(bundle.read_bytes())
        # set the encryption flag of every central-directory entry (signature PK\x01\x02, flags at +8)
        pos = data.find(b"PK\x01\x02")
        while pos != -1:
            data[pos + 8] |= 1
            pos = data.find(b"PK\x01\x02", pos + 4)
        path.write_bytes(bytes(data))
    res = run_cli("verify", str(path))
    assert res.returncode in (1, 2)
    assert len(res.stderr.strip().splitlines()) <= 1 and "Traceback" not in res.stderr


# ----- manifests: every field sealed -----------------------------------------------------------
@pytest.mark.parametrize("edit", [lambda m: m["protocol"].update(endpoint="openai-chat:https://elsewhere"),
                                  lambda m: m.update(toolkit_version="9.9.9"),
                                  lambda m: m["protocol"].update(note="added")])
def test_edited_provenance_no_longer_verifies(tmp_path, edit):
    store = tmp_path / "s"
    assert run_cli("simulate", "--runs", "1", "--persona-count", "3", "--repetitions", "2", "--store", str(store)) \
        .returncode == 0
    path = next((store / "runs").glob("*.json"))
    manifest = json.loads(path.read_text())
    assert manifest["format"] == "toolkit-run/3" and len(manifest["seal"]) == 64
    edit(manifest)
    path.write_text(json.dumps(manifest))
    res = run_cli("verify", "--store", str(store))
    assert res.returncode == 1 and "seal" in res.stdout


def test_the_previous_release_format_still_loads_and_verifies():
    res = run_cli("verify", "--store", str(ROOT / "parquet"))
    assert res.returncode == 0 and "ok (2 runs)" in res.stdout


# ----- the recorder checks before it pays -------------------------------------------------------
def test_record_into_a_store_that_cannot_be_written_sends_nothing(tmp_path):
    store = tmp_path / "s"
    store.mkdir()
    (store / "objects").write_text("not a folder")  # a store whose segment folder cannot be written
    behaviour = Behaviour()
    server, url = start(behaviour)
    try:
        res = run_cli("record", "--backend", "openai", "--model", "m", "--base-url", url, "--limit-personas", "1",
                      "--items", "1,2", "--repetitions", "1", "--quiet", "--store", str(store))
    finally:
        server.shutdown()
    assert res.returncode == 2 and "cannot be written" in one_line(res)
    assert behaviour.count == 0


# ----- what is not a store ------------------------------------------------------------------------
@pytest.mark.parametrize("folder", ["/", "plain"])
def test_a_folder_that_is_not_a_store_is_no_store(tmp_path, folder):
    path = Path(folder) if folder == "/" else tmp_path / folder
    path.mkdir(exist_ok=True)
    for cmd in (["verify"], ["runs"], ["analyze"]):
        res = run_cli(*cmd, "--store", str(path))
        assert res.returncode == 2 and "no store at" in one_line(res)


def test_write_commands_in_the_source_tree_never_write_the_demo_store():
    before = tree_bytes(ROOT / "parquet")
    res = run_cli("simulate", "--runs", "1", "--persona-count", "3", "--repetitions", "1", cwd=ROOT)
    assert res.returncode == 2 and "read-only" in one_line(res)
    assert tree_bytes(ROOT / "parquet") == before


# ----- one bad run never stops the rest ----------------------------------------------------------
def _logprob_csv_with_empty_cells(path: Path) -> Path:
    """A logprob run whose top-k list held no digit for about half of its cells."""
    import numpy as np

    rng = np.random.default_rng(3)
    lines = [",".join(["persona_id", "question_id"] + [f"digit_{k}_logprob" for k in range(6)])]
    for p in range(3):
        for q in range(1, 31):
            values = [repr(float(v)) for v in -np.abs(rng.normal(3, 1, 6)) - 1]
            lines.append(",".join([str(p), str(q)] + ([""] * 6 if rng.random() < 0.47 else values)))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_run_that_cannot_be_analyzed_leaves_the_others_reported(tmp_path):
    store = tmp_path / "s"
    assert run_cli("simulate", "--runs", "1", "--persona-count", "5", "--repetitions", "2", "--store", str(store)) \
        .returncode == 0
    lp = _logprob_csv_with_empty_cells(tmp_path / "small_logprobs.csv")
    assert run_cli("import", str(lp), "--temperature", "1", "--store", str(store)).returncode == 0
    res = run_cli("analyze", "--format", "csv", "--store", str(store))
    assert res.returncode == 1 and "sim-0000" in res.stdout and "skipped: run mfq30/" in res.stderr
    rep = run_cli("report", "--out", str(tmp_path / "rep"), "--store", str(store))
    assert rep.returncode == 1 and (tmp_path / "rep" / "index.html").is_file()
    curves = run_cli("curves", "--store", str(store))
    assert curves.returncode == 1 and curves.stdout == "" and "no selected run could be analyzed" in curves.stderr


def test_a_self_run_on_some_foundations_draws_what_exists(tmp_path):
    import random

    rng = random.Random(1)
    for variant, items in (("base", range(1, 31)), ("narrow", [1, 2, 3])):
        lines = ["question_id,run_index,rating,failures,response,collected_at"]
        lines += [f"{q},{k},{rng.randint(0, 5)},0,x," for q in items for k in range(1, 4)]
        (tmp_path / variant).mkdir()
        (tmp_path / variant / "m_temp01_self.csv").write_text("\n".join(lines) + "\n")
    store = tmp_path / "s"
    assert run_cli("import", str(tmp_path / "base"), str(tmp_path / "narrow"), "--store", str(store)).returncode == 0
    res = run_cli("report", "--mode", "self", "--out", str(tmp_path / "rep"), "--store", str(store))
    assert res.returncode == 0, res.stderr
    assert any((tmp_path / "rep" / "figures").iterdir())


# ----- removing a run, and what kill -9 leaves behind ---------------------------------------------
def test_rm_removes_a_run_and_compact_frees_its_segments(tmp_path):
    store = tmp_path / "s"
    assert run_cli("simulate", "--runs", "2", "--persona-count", "3", "--repetitions", "2", "--store", str(store)) \
        .returncode == 0
    victim = next(m for m in json.loads(run_cli("runs", "--format", "json", "--store", str(store)).stdout)
                  if m["model"] == "sim-0001")["run_id"]
    before = tree_bytes(store)
    dry = run_cli("rm", victim, "--dry-run", "--store", str(store))
    assert dry.returncode == 0 and "would remove" in dry.stdout and tree_bytes(store) == before
    unknown = run_cli("rm", victim, "mfq30/base/nobody/T0.7/persona", "--store", str(store))
    assert unknown.returncode == 2 and tree_bytes(store) == before  # all or nothing
    assert run_cli("rm", victim, "--store", str(store)).returncode == 0
    assert victim not in run_cli("runs", "--store", str(store)).stdout
    freed = run_cli("compact", "--grace", "0", "--store", str(store))
    assert freed.returncode == 0 and "removed 1 unreferenced" in freed.stdout
    assert run_cli("verify", "--store", str(store)).returncode == 0


def test_compact_removes_old_temporary_leftovers_but_not_a_file_being_written(tmp_path):
    import os
    import time

    store = tmp_path / "s"
    assert run_cli("simulate", "--runs", "1", "--persona-count", "3", "--repetitions", "2", "--store", str(store)) \
        .returncode == 0
    old = store / "runs" / ".tmp-abandoned"
    old.write_text("half a manifest")
    os.utime(old, (time.time() - 2 * 86400,) * 2)
    held = store / "objects" / ".tmp-in-progress"
    with open(held, "w") as fh:  # held open by this (live) process
        os.utime(held, (time.time() - 2 * 86400,) * 2)
        res = run_cli("compact", "--grace", "3600", "--store", str(store))
        assert res.returncode == 0
        assert not old.exists() and held.exists()
        fh.write("still writing")


def test_a_report_killed_mid_write_leaves_nothing_the_next_report_keeps(small, tmp_path):
    dead = tmp_path / ".rep.partial-999999999"  # no such process
    dead.mkdir()
    (dead / "index.html").write_text("half")
    assert run_cli("report", "--out", str(tmp_path / "rep"), "--store", str(small)).returncode == 0
    assert not dead.exists()


def test_record_plan_of_a_shipped_model_downloads_nothing(tmp_path):
    res = run_cli("record", "--backend", "local", "--model-path", "smollm2", "--model", "SmolLM2-135M-Instruct",
                  "--mode", "logprob", "--limit-personas", "1", "--top-logprobs", "5", "--plan",
                  "--store", str(tmp_path / "s"), env={"TOOLKIT_MODELS": str(tmp_path / "models")})
    assert res.returncode == 0 and "to_send 30" in res.stdout
    assert not (tmp_path / "models").exists()
    assert "--top-logprobs 5" in res.stderr  # a small top-k is warned about before anything is paid


def test_the_retention_hint_names_the_re_ask(tmp_path):
    store = tmp_path / "s"
    res = run_cli("simulate", "--runs", "1", "--persona-count", "3", "--repetitions", "1", "--invalid-share", "0.6",
                  "--store", str(store))
    assert res.returncode == 0
    out = run_cli("analyze", "--store", str(store))
    assert out.returncode == 1 and "record --refresh" in out.stderr and out.stdout == ""


# ----- messages that name the file ------------------------------------------------------------------
def test_a_truncated_bundle_and_a_file_as_store_are_named(bundle, tmp_path):
    cut = tmp_path / "cut.zip"
    cut.write_bytes(bundle.read_bytes()[:3000])
    res = run_cli("import", str(cut), "--store", str(tmp_path / "s"))
    assert res.returncode == 1 and "cut.zip" in one_line(res) and "not a complete ZIP" in res.stderr
    afile = tmp_path / "afile"
    afile.write_text("hi")
    res = run_cli("import", str(bundle), "--store", str(afile))
    assert res.returncode == 2 and "afile: is a file, not a store folder" in one_line(res)


def test_a_failed_import_into_an_empty_store_leaves_nothing(exported, tmp_path):
    """The first file is good (its segment and the instrument get written), the second is not:
    the store is left as empty as it was."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a_temp07.csv").write_text(exported.read_text())
    (src / "b_temp07.csv").write_text(exported.read_text().replace("\n1,", "\n1x,", 1))
    store = tmp_path / "s"
    res = run_cli("import", str(src / "a_temp07.csv"), str(src / "b_temp07.csv"), "--store", str(store))
    assert res.returncode == 2 and "b_temp07.csv" in one_line(res)
    assert [p for p in store.rglob("*") if p.is_file() and "locks" not in p.parts] == []


def test_a_bundle_written_while_compact_replaces_the_run_reads_the_fresh_manifest(tmp_path, monkeypatch):
    """The race of `bundle` beside `compact --grace 0`, made certain: the first segment read of
    the bundle runs a real compact and garbage collection of that run, so the segments its
    manifest named are gone. The bundle follows the analysis reader's discipline (re-read the
    manifest, read again) and comes out whole."""
    from toolkit.store import Store
    from toolkit.store.bundle import open_bundle, write_bundle

    store_dir = tmp_path / "s"
    res = run_cli("record", "--backend", "instant", "--model", "m", "--limit-personas", "4", "--items", "1,2,3,4,5",
                  "--repetitions", "2", "--flush-rows", "8", "--quiet", "--store", str(store_dir))
    assert res.returncode == 0, res.stderr
    store = Store(store_dir)
    [run] = store.runs()
    assert len(run.segments) > 1
    original = Store.read_segment_bytes
    raced: list[str] = []

    def racing(self, digest, run_id=None):
        if not raced:
            raced.append(digest)
            self.compact(run_id)
            self.gc(0)
        return original(self, digest, run_id)

    monkeypatch.setattr(Store, "read_segment_bytes", racing)
    info = write_bundle(store, [run], tmp_path / "b.zip")
    assert raced and not (store_dir / "objects" / raced[0][:2] / f"{raced[0]}.parquet").exists()
    monkeypatch.undo()
    opened, _ = open_bundle(info.path)
    assert opened.verify() == [] and len(opened.runs()[0].segments) == 1


# ----- daily use: what figures and tables say ---------------------------------------------------------
def test_every_plot_says_where_it_went_and_diagnose_plots_what_it_lists(exported, tmp_path):
    for variant in ("base", "tuned"):
        (tmp_path / variant).mkdir()
        (tmp_path / variant / "m_temp07.csv").write_text(exported.read_text())
    store = tmp_path / "s"
    assert run_cli("import", str(tmp_path / "base"), str(tmp_path / "tuned"), "--store", str(store)).returncode == 0
    figures = {}
    for by in ("persona", "item"):
        out = tmp_path / f"{by}.png"
        res = run_cli("diagnose", "--by", by, "--plot", str(out), "--store", str(store))
        assert res.returncode == 0 and f"figure: {out}" in res.stderr, res.stderr
        figures[by] = out.read_bytes()
    assert figures["persona"] != figures["item"]  # the item plot ranks items (it drew personas before)


def test_a_number_rounded_across_a_power_of_ten_keeps_its_width():
    from toolkit.report.tables import _fixed

    assert [_fixed(v, 4) for v in (0.99995, 1.0, 0.9876, 9.99996, 0.099996)] == \
        ["1.000", "1.000", "0.9876", "10.00", "0.1000"]


def test_a_hostile_report_marker_is_one_line_and_nothing_is_removed(small, tmp_path):
    out = tmp_path / "rep"
    out.mkdir()
    (out / ".toolkit-report").write_text("[" * 100_000 + "]" * 100_000)  # deeper than the JSON parser goes
    (out / "notes.txt").write_text("mine")
    res = run_cli("report", "--out", str(out), "--store", str(small))
    assert res.returncode == 2 and "notes.txt" in one_line(res)
    assert (out / "notes.txt").read_text() == "mine"
