"""The results cache (store/cache.py, analysis/cache.py): the same bytes out with and without
it, a hit that reads no row but still checks every hash, keys that move with everything a
result depends on, and the entry's life: damaged, pruned, carried in a bundle, recomputed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import run_cli
from toolkit.analysis import analyze
from toolkit.analysis.api import ROW_SCHEMA
from toolkit.analysis.cache import AnalysisCache
from toolkit.analysis.options import AnalysisOptions
from toolkit.errors import StoreCorrupt
from toolkit.store import Store
from toolkit.store.cache import Entry, ResultCache, cache_key, decode, encode
from toolkit.store.query import Selection

SMALL = AnalysisOptions(bootstrap=60, rerun_bootstrap=20)


@pytest.fixture(scope="module")
def master(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cache") / "store"
    res = run_cli("simulate", "--runs", "3", "--persona-count", "30", "--repetitions", "4", "--invalid-share", "0.05",
                  "--store", str(root))
    assert res.returncode == 0, res.stderr
    return root


@pytest.fixture
def store(master, tmp_path) -> Store:
    shutil.copytree(master, tmp_path / "s")
    return Store(tmp_path / "s")


def entries(store: Store) -> list[Path]:
    return list(ResultCache(store.root).files())


def damage_first_segment(store: Store) -> None:
    """Flip one bit in the middle of the first run's first segment."""
    seg = store.object_path(store.runs()[0].segments[0].object)
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 0x10
    seg.chmod(0o644)
    seg.write_bytes(bytes(data))


def cli_analyze(store: Store, *extra: str) -> str:
    res = run_cli("analyze", "--by", "group", "--corrected", "--format", "csv", "--bootstrap", "60",
                  "--rerun-bootstrap", "20", *extra, "--store", str(store.root))
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_the_output_is_the_same_bytes_cold_warm_and_without_the_cache(store):
    fresh = cli_analyze(store, "--no-cache")
    assert entries(store) == []  # --no-cache writes nothing
    cold = cli_analyze(store)
    assert len(entries(store)) == 3  # one entry a run
    warm = cli_analyze(store)
    assert fresh == cold == warm
    # one entry serves both the overall rows and --by group, --corrected or not
    res = run_cli("analyze", "--format", "csv", "--bootstrap", "60", "--rerun-bootstrap", "20", "--store",
                  str(store.root))
    again = run_cli("analyze", "--format", "csv", "--bootstrap", "60", "--rerun-bootstrap", "20", "--no-cache",
                    "--store", str(store.root))
    assert res.stdout == again.stdout and res.stdout.count("\n") == 4 and len(entries(store)) == 3


def test_a_hit_decodes_no_row_and_a_changed_option_is_a_miss(store, monkeypatch):
    first = analyze(store, by_group=True, options=SMALL).frame

    def no_rows(*args, **kwargs):
        raise AssertionError("a row was read")

    monkeypatch.setattr(Store, "_read_checked", no_rows)
    assert analyze(store, by_group=True, options=SMALL).frame.equals(first)
    for changed in (SMALL.but(seed=1), SMALL.but(bootstrap=61), SMALL.but(rerun_bootstrap=21),
                    SMALL.but(retention="run")):
        with pytest.raises(AssertionError, match="a row was read"):
            analyze(store, options=changed)
    # what changes nothing but the speed is not in the key
    assert analyze(store, by_group=True, options=SMALL.but(jobs=2, backend="threading", ci_level=0.9)).frame.equals(
        first)


def test_the_key_holds_the_family_a_retention_reads(store, tmp_path):
    """Under the family rule a run keeps the personas valid at every temperature of its model:
    a new run of the family at another temperature changes what it keeps, so its key."""
    runs = store.runs()
    before = AnalysisCache(store, runs, SMALL, ROW_SCHEMA).key(runs[0])
    other = Store(tmp_path / "other")
    assert run_cli("simulate", "--runs", "1", "--persona-count", "30", "--repetitions", "4", "--temperature", "1.0",
                   "--store", str(other.root)).returncode == 0
    sibling = other.runs()[0]
    assert sibling.model == runs[0].model and sibling.temperature != runs[0].temperature
    after = AnalysisCache(store, [*runs, sibling], SMALL, ROW_SCHEMA).key(runs[0])
    by_run = AnalysisCache(store, [*runs, sibling], SMALL.but(retention="run"), ROW_SCHEMA)
    assert before is not None and after is not None and before[0] != after[0]
    assert sibling.fingerprint in after[1] and sibling.fingerprint not in before[1]
    assert by_run.key(runs[0]) == AnalysisCache(store, runs, SMALL.but(retention="run"), ROW_SCHEMA).key(runs[0])


def test_a_damaged_entry_is_a_miss_and_is_rewritten(store):
    first = analyze(store, by_group=True, options=SMALL).frame
    path = entries(store)[0]
    good = path.read_bytes()
    for damage in (good[:-1] + bytes([good[-1] ^ 1]), good[: len(good) // 2], b"", good.replace(b'"kind"', b'"kinx"')):
        path.write_bytes(damage)
        res = run_cli("verify", "--store", str(store.root))
        assert res.returncode == 1 and f"cache entry {path.name}: is damaged" in res.stdout
        assert analyze(store, by_group=True, options=SMALL).frame.equals(first)
        assert path.read_bytes() == good  # recomputed, and written again whole


def test_a_damaged_segment_fails_as_loudly_with_the_cache_as_without(store):
    analyze(store, options=SMALL)
    damage_first_segment(store)
    for options in (SMALL, SMALL.but(cache=False)):
        with pytest.raises(StoreCorrupt, match="damaged"):
            analyze(store, options=options)


def test_an_entry_holding_other_numbers_is_found_by_verify(store):
    """An entry is as trustworthy as whoever wrote it (a bundle's author): verify recomputes
    each one, and a forged number is a problem naming the entry."""
    analyze(store, by_group=True, options=SMALL)
    cache = AnalysisCache(store, store.runs(), SMALL, ROW_SCHEMA)
    m = store.runs()[1]
    held = cache.lookup([m])[m.run_id]
    forged = held.frame.with_columns(held.frame["S"] * 1.01)
    cache.save([(m, forged, held.note, held.refusal)])
    assert analyze(store, options=SMALL).frame.filter(run_id=m.run_id)["S"].to_list() == forged["S"][:1].to_list()
    res = run_cli("verify", "--store", str(store.root))
    assert res.returncode == 1 and f"results for run {m.run_id} that this toolkit does not compute" in res.stdout
    # the audit never reads the cache: it recomputes from the hashed rows (toolkit/audit/run.py)
    assert analyze(store, options=SMALL.but(cache=False)).frame.filter(run_id=m.run_id)["S"][0] == held.frame["S"][0]


def test_compact_removes_what_no_run_reaches(store):
    analyze(store, options=SMALL)
    analyze(store, options=SMALL.but(seed=5))
    assert len(entries(store)) == 6
    gone = store.runs()[0]
    stale = Entry(cache_key("computed by other code"), "analyze/1", (store.runs()[1].fingerprint,),
                  {"code": "another source tree"}, b"")
    assert ResultCache(store.root).put(stale)
    assert run_cli("rm", gone.run_id, "--store", str(store.root)).returncode == 0
    leftover = entries(store)[0].parent / ".tmp-killed-writer"  # what a writer killed mid-write leaves
    leftover.write_bytes(b"half an entry")
    res = run_cli("compact", "--grace", "0", "--store", str(store.root))
    assert res.returncode == 0 and "removed 3 results-cache entries" in res.stdout  # 2 of the run, 1 of other code
    assert not leftover.exists()
    left = [e for _, e in ResultCache(store.root).entries()]
    assert len(left) == 4 and all(e is not None and gone.fingerprint not in e.runs for e in left)


def test_a_bundle_carries_the_cache_of_its_runs_and_verify_recomputes_it(store, tmp_path):
    text = cli_analyze(store)
    keep = store.runs()[1:]
    out = tmp_path / "b.zip"
    ids = ",".join(m.run_id for m in keep)
    assert run_cli("bundle", "--run-id", ids, "--with-cache", "--out", str(out), "--store",
                   str(store.root)).returncode == 0
    import zipfile

    carried = [n for n in zipfile.ZipFile(out).namelist() if n.startswith("store/cache/")]
    assert len(carried) == 2  # the entries of the bundled runs only
    res = run_cli("verify", str(out))
    assert res.returncode == 0 and "2 results-cache entries recomputed" in res.stdout
    from_bundle = cli_analyze(Store(out))
    assert from_bundle.splitlines()[1:] == [line for line in text.splitlines()[1:]
                                            if any(m.run_id in line for m in keep)]
    from toolkit.analysis.cache import KIND
    from toolkit.store.cache import CARRIED_KINDS

    assert KIND in CARRIED_KINDS  # the analyze entries are what verify recomputes, and what travels
    # a bundle carrying an entry verify cannot recompute (a forged report part, say) is refused
    forged = tmp_path / "forged.zip"
    part = Entry(cache_key("a forged part"), "report-part/1", (keep[0].fingerprint,), {}, b"{}")
    rebuild_with(out, forged, f"store/cache/{part.key[:2]}/{part.key}.entry", encode(part))
    res = run_cli("verify", str(forged))
    assert res.returncode == 1 and "of a kind a bundle does not carry" in res.stdout + res.stderr
    # an entry whose bytes match its hash but hold no table: a miss (recomputed), and verify says so
    name = carried[0]
    held = decode(zipfile.ZipFile(out).read(name))
    garbage = tmp_path / "garbage.zip"
    rebuild_with(out, garbage, name, encode(Entry(held.key, held.kind, held.runs, held.meta, b"not a table")))
    assert cli_analyze(Store(garbage)) == from_bundle
    res = run_cli("verify", str(garbage))
    assert res.returncode == 1 and "that this toolkit does not compute" in res.stdout
    plain = tmp_path / "p.zip"
    assert run_cli("bundle", "--run-id", ids, "--out", str(plain), "--store", str(store.root)).returncode == 0
    assert not [n for n in zipfile.ZipFile(plain).namelist() if n.startswith("store/cache/")]


def test_the_demo_store_gets_no_cache(tmp_path):
    """Nothing writes into the embedded demo store unless it is named as a target."""
    from conftest import ROOT

    before = sorted(p.relative_to(ROOT / "parquet") for p in (ROOT / "parquet").rglob("*"))
    res = run_cli("analyze", "--bootstrap", "20", "--rerun-bootstrap", "5", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert sorted(p.relative_to(ROOT / "parquet") for p in (ROOT / "parquet").rglob("*")) == before
    assert not (ROOT / "parquet" / "cache").exists()


def test_a_second_report_copies_its_parts_and_writes_the_same_bytes(store, tmp_path):
    from conftest import tree_bytes
    from toolkit.report.parts import KIND

    args = ["report", "--bootstrap", "60", "--rerun-bootstrap", "20", "--store", str(store.root), "--out"]
    assert run_cli(*args, str(tmp_path / "r1")).returncode == 0
    parts = [e for _, e in ResultCache(store.root).entries() if e is not None and e.kind == KIND]
    assert len(parts) == 6  # three runs' pages, the persona-set profile figure, its frame, the retention table
    again = run_cli(*args, str(tmp_path / "r2"))
    fresh = run_cli(*args, str(tmp_path / "r3"), "--no-cache")
    assert again.returncode == fresh.returncode == 0
    assert tree_bytes(tmp_path / "r1") == tree_bytes(tmp_path / "r2") == tree_bytes(tmp_path / "r3")
    assert len(list(ResultCache(store.root).files())) == 3 + 6  # nothing new: every part was a hit


def test_a_report_of_a_damaged_store_is_the_same_with_and_without_the_cache(store, tmp_path):
    """The cached parts of a run whose segment was damaged since are not used: its page says
    it cannot be read, as a report without the cache says."""
    from conftest import tree_bytes

    args = ["report", "--bootstrap", "60", "--rerun-bootstrap", "20", "--store", str(store.root), "--out"]
    assert run_cli(*args, str(tmp_path / "r1")).returncode == 0
    damage_first_segment(store)
    cached = run_cli(*args, str(tmp_path / "r2"))
    fresh = run_cli(*args, str(tmp_path / "r3"), "--no-cache")
    assert cached.returncode == fresh.returncode and cached.stderr == fresh.stderr
    assert "damaged" in (tmp_path / "r2" / "index.html").read_text()
    assert tree_bytes(tmp_path / "r2") == tree_bytes(tmp_path / "r3")


def test_paired_comparisons_are_kept_whole_and_recomputed_when_asked_otherwise(tmp_path, monkeypatch):
    from toolkit.analysis import paired_compare

    root = tmp_path / "pairs"
    assert run_cli("simulate", "--runs", "2", "--paired", "--persona-count", "30", "--repetitions", "4",
                   "--effect-within-factor", "1.3", "--store", str(root)).returncode == 0
    args = ["compare", "--paired", "--format", "csv", "--bootstrap", "60", "--permutations", "50", "--store", str(root)]
    cold, warm, fresh = run_cli(*args), run_cli(*args), run_cli(*args, "--no-cache")
    assert cold.returncode == warm.returncode == fresh.returncode == 0
    assert cold.stdout == warm.stdout == fresh.stdout and cold.stdout.strip().endswith(",true")
    options = SMALL.but(permutations=50, bootstrap=60)
    store = Store(root)
    first = paired_compare(store, options=options).frame

    def no_rows(*args, **kwargs):
        raise AssertionError("a row was read")

    monkeypatch.setattr(Store, "_read_checked", no_rows)
    assert paired_compare(store, options=options).frame.equals(first)
    for changed in (options.but(permutations=51), options.but(ci_level=0.9), options.but(min_shared=0.5)):
        with pytest.raises(AssertionError, match="a row was read"):
            paired_compare(store, options=changed)
    with pytest.raises(AssertionError, match="a row was read"):
        paired_compare(store, options=options, family=lambda model: model.split("-")[0])  # a rule no key can hold


def rebuild_with(bundle: Path, out: Path, name: str, data: bytes) -> None:
    """A copy of ``bundle`` with one more member, listed in a rewritten index with a matching
    digest: what a hostile author can make, since the digest only proves the list."""
    import json
    import zipfile

    from toolkit.hashing import canonical_json, sha256_bytes

    with zipfile.ZipFile(bundle) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    index = json.loads(members.pop("bundle.json"))
    members[name] = data
    index["members"][name] = {"bytes": len(data), "sha256": sha256_bytes(data)}
    index["digest"] = sha256_bytes(canonical_json(index["members"]).encode("utf-8"))
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("bundle.json", canonical_json(index) + "\n")
        for n, d in sorted(members.items()):
            zf.writestr(n, d)


def test_a_whole_result_is_keyed_by_every_manifest_field_an_analysis_may_read(store):
    """Pairing reads the persona set a manifest records, a run page its provenance: neither is in
    the rows' fingerprint, so a Memo key holds the whole manifest (a compaction: a miss)."""
    import dataclasses

    from toolkit.analysis.cache import Memo

    memo = Memo(store, True)
    m = store.runs()[0]
    other_set = dataclasses.replace(m, protocol={**m.protocol, "personas": {"digest": "0" * 64}})
    assert other_set.fingerprint == m.fingerprint
    assert memo.hit(["x"], [m])[0] != memo.hit(["x"], [other_set])[0]
    assert memo.hit(["x"], [m])[0] == memo.hit(["x"], [dataclasses.replace(m)])[0]


def test_a_power_table_is_kept_whole(store, monkeypatch):
    from toolkit.analysis.power import power

    m = store.runs()[0]
    kwargs = dict(personas=(10, 20), repetitions=(3,), deltas=(20,), sims=10)
    first = power(store, Selection(run_id=[m.run_id]), options=SMALL, **kwargs)

    def no_rows(*args, **kw):
        raise AssertionError("a row was read")

    monkeypatch.setattr(Store, "_read_checked", no_rows)
    assert power(store, Selection(run_id=[m.run_id]), options=SMALL, **kwargs).equals(first)
    for changed in (dict(kwargs, sims=11), dict(kwargs, deltas=(30,))):
        with pytest.raises(AssertionError, match="a row was read"):
            power(store, Selection(run_id=[m.run_id]), options=SMALL, **changed)
    with pytest.raises(AssertionError, match="a row was read"):
        power(store, Selection(run_id=[m.run_id]), options=SMALL.but(seed=3), **kwargs)


def test_curves_are_kept_whole(logit_store, tmp_path, monkeypatch):
    from toolkit.analysis import curves

    store = Store(shutil.copytree(logit_store.root, tmp_path / "logit"))
    args = ["curves", "--points", "21", "--format", "csv", "--bootstrap", "50", "--store", str(store.root)]
    cold, warm, fresh = run_cli(*args), run_cli(*args), run_cli(*args, "--no-cache")
    assert cold.returncode == 0 and cold.stdout == warm.stdout == fresh.stdout and cold.stdout.count("\n") == 22
    first = curves(store, points=21, options=SMALL).frame

    def no_rows(*args, **kwargs):
        raise AssertionError("a row was read")

    monkeypatch.setattr(Store, "_read_checked", no_rows)
    assert curves(store, points=21, options=SMALL).frame.equals(first)
    with pytest.raises(AssertionError, match="a row was read"):
        curves(store, points=22, options=SMALL)


def test_the_same_rows_encode_to_the_same_bytes_however_they_were_sliced():
    """A run's rows are a slice of all runs' rows when many are saved at once, and a frame of
    their own when one is recomputed: the entry's payload must not depend on which (validity
    bitmaps of a slice carry its neighbours' bits in their padding)."""
    import polars as pl

    from toolkit.analysis.cache import decode_frame, encode_frame

    rows = pl.DataFrame({"group": ["all", "Harm/Care", None, "Purity"], "S": [0.5, None, 0.25, 1.0],
                         "ok": [True, None, False, True], "n": [3, 4, None, 6], "model": ["a", "bb", "ccc", "d"],
                         "R": [1.5, 2.5, 3.5, 4.5], "full": [True, False, True, True]})
    many = pl.concat([rows.reverse(), rows, rows.reverse()], rechunk=True)
    alone = encode_frame(rows)
    assert encode_frame(many.slice(4, 4)) == alone == encode_frame(many.to_arrow().slice(4, 4))
    assert encode_frame(many.slice(5, 3)) == encode_frame(rows.slice(1, 3))
    assert encode_frame(many.slice(7, 1)) == encode_frame(rows.slice(3, 1))  # a row with no null at all
    assert decode_frame(alone).equals(rows)
