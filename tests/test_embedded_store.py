"""The embedded default store (parquet/): a real SmolLM2 recording made with the recorder."""

from __future__ import annotations

from conftest import ROOT, run_cli
from toolkit.store import Store


def test_embedded_store_is_sound_and_analyzable():
    store = Store(ROOT / "parquet")
    assert store.verify() == []
    runs = {m.mode: m for m in store.runs()}
    assert set(runs) == {"logprob", "self"}
    lp = runs["logprob"]
    assert lp.model == "SmolLM2-135M-Instruct" and lp.rows == 20 * 30
    assert lp.protocol["origin"] == "recorder" and lp.protocol["personas"]["name"] == "demo20"
    assert lp.protocol["endpoint"].startswith("local-transformers:sha256:b179c952")  # the pinned GGUF
    assert runs["self"].rows == 30 * 5
    # the README's main command, on the default store (no --store, no TOOLKIT_STORE)
    res = run_cli("verify")
    assert res.returncode == 0, res.stderr
    res = run_cli("analyze", "--by", "group", "--format", "csv")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 1 + 6 and ",20,30," in lines[1]
    assert run_cli("profiles", "--format", "csv").returncode == 0
    # nothing from ../shared: every row was recorded, none imported
    for m in store.runs():
        provenance = set(store.read_run(m, ["provenance"])["provenance"].to_pylist())
        assert all(p.startswith("recorder:local:") for p in provenance)


def test_a_format_1_store_reads_as_is_and_compact_migrates_it(tmp_path):
    """The embedded store was written by the first release (segments v1, manifests toolkit-run/1,
    fingerprint fp1): it verifies and analyzes as it is, and `compact` rewrites it in the
    current format without moving a single printed number."""
    import shutil

    src = ROOT / "parquet"
    copy = tmp_path / "store"
    shutil.copytree(src, copy, ignore=shutil.ignore_patterns("locks", "tmp"))
    store = Store(copy)
    assert {m.format for m in store.runs()} == {"toolkit-run/1"}
    before = [run_cli(*cmd, "--format", "csv", "--store", str(copy)).stdout
              for cmd in (["analyze", "--by", "group"], ["profiles"], ["curves", "--points", "5"])]
    res = run_cli("compact", "--grace", "0", "--store", str(copy))
    assert res.returncode == 0, res.stderr
    assert {(m.format, m.fingerprint_version) for m in store.runs()} == {("toolkit-run/3", "fp2")}  # sealed
    assert store.verify() == []
    after = [run_cli(*cmd, "--format", "csv", "--store", str(copy)).stdout
             for cmd in (["analyze", "--by", "group"], ["profiles"], ["curves", "--points", "5"])]
    assert after == before
    import pyarrow.parquet as pq

    for m in store.runs():
        schema = pq.read_schema(store.object_path(m.segments[0].object))
        assert schema.metadata[b"toolkit.schema_version"] == b"3"
        assert str(schema.field("request_key").type) == "fixed_size_binary[32]"
        assert {"prompt_tokens", "completion_tokens", "cached_tokens"} <= set(schema.names)
