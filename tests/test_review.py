"""Review and regression workflows for anyone's data: bundles, drafted claims, `check`, and
audits that explain a failure — the whole loop, on the embedded store and on simulated runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import polars as pl
import pytest

from conftest import EM, ROOT, run_cli, tree_bytes

DEMO = ROOT / "parquet"
FAST = ("--bootstrap", "200", "--rerun-bootstrap", "50")


@pytest.fixture(scope="module")
def demo_bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "demo.zip"
    res = run_cli("bundle", "--out", str(out), "--store", str(DEMO))
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"bundle: {out} (2 runs") and "digest " in res.stdout
    return out


def test_bundle_verify_draft_audit_loop_on_the_embedded_store(demo_bundle, tmp_path):
    again = tmp_path / "again.zip"
    assert run_cli("bundle", "--out", str(again), "--store", str(DEMO)).returncode == 0
    assert again.read_bytes() == demo_bundle.read_bytes()  # same runs, same bytes
    ok = run_cli("verify", str(demo_bundle))
    assert ok.returncode == 0 and ok.stdout.startswith(f"verify: ok (bundle {demo_bundle}: 2 runs, digest ")
    claims = tmp_path / "claims.json"
    drafted = run_cli("claims", "draft", "--store", str(demo_bundle), "--metrics", "S,R,sigma_bar,S_se",
                      "--decimals", "4", "--by", "group", "--out", str(claims), *FAST)
    assert drafted.returncode == 0, drafted.stderr
    doc = json.loads(claims.read_text())
    assert doc["format"] == "toolkit-claims/2" and len(doc["claims"]) == 6 * 4  # logprob run: all + 5 groups
    # the drafted numbers are the analysis rounded: checked against an independent analyze csv
    csv = pl.read_csv(run_cli("analyze", "--by", "group", "--format", "csv", "--store", str(DEMO), *FAST)
                      .stdout.encode())
    for c in doc["claims"]:
        row = csv.filter((pl.col("group") == c["group"]) & (pl.col("model") == c["model"])).row(0, named=True)
        assert c["printed"] == f"{row[c['metric']]:.4f}"
    site = tmp_path / "review"
    audited = run_cli("audit", "--claims", str(claims), "--store", str(demo_bundle), "--format", "json",
                      "--report-dir", str(site), *FAST)
    assert audited.returncode == 0, audited.stderr
    assert json.loads(audited.stdout)["counts"] == {"PASS": 24, "WITHIN-SE": 0, "FAIL": 0, "UNVERIFIABLE": 0}
    page = (site / "audit.html").read_text()
    assert page.count('<td style="color:#2e7d32;font-weight:bold">PASS</td>') == 24 and "Source: the store" in page
    quiet = run_cli("check", "--claims", str(claims), "--store", str(demo_bundle), *FAST)
    assert quiet.returncode == 0 and quiet.stdout == "" and "PASS 24" in quiet.stderr
    # one edited claim fails, alone, in one line
    doc["claims"][0]["printed"] = "9.9999"
    claims.write_text(json.dumps(doc))
    failed = run_cli("check", "--claims", str(claims), "--store", str(demo_bundle), *FAST)
    assert failed.returncode == 1
    assert failed.stdout.splitlines() == [f"FAIL {doc['claims'][0]['id']}: printed 9.9999, recomputed "
                                          + failed.stdout.split("recomputed ")[1].split("\n")[0]]
    summary = run_cli("audit", "--claims", str(claims), "--store", str(demo_bundle), "--summary", *FAST)
    assert summary.returncode == 1 and summary.stdout == failed.stdout  # audit --summary is check


def _flip_member_byte(bundle: Path, out: Path, member_prefix: str) -> str:
    """A copy of ``bundle`` with one byte changed inside the first member named so (members are
    stored uncompressed, so the byte sits in the archive as it is)."""
    data = bytearray(bundle.read_bytes())
    with zipfile.ZipFile(bundle) as zf:
        info = next(i for i in zf.infolist() if i.filename.startswith(member_prefix))
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.file_size // 2] ^= 0x01
    out.write_bytes(bytes(data))
    return info.filename


@pytest.mark.parametrize("prefix", ["store/objects/", "store/runs/", "bundle.json"])
def test_a_tampered_bundle_is_refused_naming_the_member(demo_bundle, tmp_path, prefix):
    bad = tmp_path / "bad.zip"
    member = _flip_member_byte(demo_bundle, bad, prefix)
    res = run_cli("verify", str(bad))
    assert res.returncode == 1 and f"member {member}" in res.stdout, res.stdout + res.stderr
    read = run_cli("analyze", "--store", str(bad))
    assert read.returncode == 1 and f"member {member}" in read.stderr
    imported = run_cli("import", str(bad), "--store", str(tmp_path / "s"))
    assert imported.returncode == 1 and not (tmp_path / "s" / "runs").exists()


def test_a_file_that_is_not_a_bundle_is_bad_input_not_a_damaged_store(tmp_path):
    stray = tmp_path / "notes.csv"
    stray.write_text("a,b\n1,2\n")
    res = run_cli("analyze", "--store", str(stray))
    assert res.returncode == 2 and "is a file but not a bundle" in res.stderr


def test_a_member_added_to_a_bundle_is_refused(demo_bundle, tmp_path):
    bad = tmp_path / "extra.zip"
    shutil.copy(demo_bundle, bad)
    with zipfile.ZipFile(bad, "a") as zf:
        zf.writestr("store/runs/smuggled.json", "{}")
    res = run_cli("verify", str(bad))
    assert res.returncode == 1 and "member store/runs/smuggled.json is not listed in bundle.json" in res.stdout


def test_a_bundle_imports_into_a_store_and_is_read_only_as_a_store(demo_bundle, tmp_path):
    store = tmp_path / "store"
    first = run_cli("import", str(demo_bundle), "--store", str(store))
    assert first.returncode == 0 and first.stdout.count(" added ") == 2, first.stderr
    assert run_cli("import", str(demo_bundle), "--store", str(store)).stdout.count(" unchanged ") == 2
    assert run_cli("verify", "--store", str(store)).returncode == 0
    mine = run_cli("runs", "--format", "csv", "--store", str(store)).stdout
    assert mine == run_cli("runs", "--format", "csv", "--store", str(DEMO)).stdout  # same runs, same fingerprints
    before = demo_bundle.read_bytes()
    refused = run_cli("compact", "--store", str(demo_bundle))  # a command that writes
    assert refused.returncode == 2 and "is a bundle, which is read-only" in refused.stderr
    assert demo_bundle.read_bytes() == before


def _two_temperatures(tmp_path: Path) -> list[str]:
    """A store with one model at two temperatures (two versions of its numbers)."""
    store = ["--store", str(tmp_path / "store")]
    for t, seed in (("0.7", "1"), ("0.3", "2")):
        res = run_cli("simulate", "--runs", "1", "--persona-count", "30", "--repetitions", "4", "--temperature", t,
                      "--seed", seed, *store)
        assert res.returncode == 0, res.stderr
    return store


def test_a_failing_claim_is_explained_by_the_run_that_reproduces_it(tmp_path):
    store = _two_temperatures(tmp_path)
    claims = tmp_path / "claims.json"
    assert run_cli("claims", "draft", *store, "--decimals", "3", "--out", str(claims), *FAST).returncode == 0
    doc = json.loads(claims.read_text())
    by = {(c["temperature"], c["metric"]): c for c in doc["claims"]}
    # the T 0.7 row printed with the T 0.3 run's S: a table made from the wrong run
    by[(0.7, "S")]["printed"] = by[(0.3, "S")]["printed"]
    claims.write_text(json.dumps(doc))
    res = run_cli("audit", "--claims", str(claims), *store, "--format", "json", *FAST)
    assert res.returncode == 1
    rows = {c["id"]: c for c in json.loads(res.stdout)["claims"]}
    wrong = rows[by[(0.7, "S")]["id"]]
    assert wrong["status"] == "FAIL"
    assert wrong["note"].startswith("printed value reproduced by run mfq30/simulated/sim-0000/T0.3/persona (S = ")
    assert sum(c["status"] == "FAIL" for c in rows.values()) == 1
    terminal = run_cli("audit", "--claims", str(claims), *store, *FAST)
    assert f"  {wrong['id']}: printed value reproduced by run mfq30/simulated/sim-0000/T0.3/persona" in terminal.stdout


@pytest.mark.shared
def test_an_earlier_catalogued_version_explains_a_stale_printed_row(tmp_path):
    """As the Claude Haiku 4.5 row of arXiv 2511.08565: the printed number comes from an earlier
    collection of the same model. Here gpt-4o's published file plays the current data and
    gpt-4.1's the earlier collection, both real files of ../shared."""
    from toolkit.analysis import analyze
    from toolkit.analysis.options import AnalysisOptions
    from toolkit.audit import audit
    from toolkit.datasets.catalogue import Dataset, DatasetFile, FileVersion
    from toolkit.hashing import sha256_file
    from toolkit.ingest.importer import import_paths
    from toolkit.store import Store

    folder = tmp_path / "files"
    folder.mkdir()
    current, earlier = EM / "runs" / "base" / "gpt-4o_temp01.csv", EM / "runs" / "base" / "gpt-4.1_temp01.csv"
    shutil.copy(current, folder / "gpt-4o_temp01.csv")
    (folder / "older").mkdir()
    shutil.copy(earlier, folder / "older" / "gpt-4o.csv")  # found by its digest, whatever its name
    version = FileVersion("earlier collection", "https://example.org/old-repo", "b4feb663" + "0" * 32,
                          "data/gpt-4o.csv", "https://example.org/old.csv", sha256_file(earlier),
                          earlier.stat().st_size)
    dataset = Dataset("twoversions", "Two versions", "test", "https://example.org/repo", "c" * 40, "claims.json",
                      (DatasetFile("data/base/gpt-4o_temp01.csv", "https://example.org/gpt-4o.csv",
                                   sha256_file(current), current.stat().st_size, "gpt-4o", "base", 0.1, "persona",
                                   (version,)),))
    scratch = Store(tmp_path / "scratch")
    import_paths(scratch, [earlier], model="gpt-4o", variant="base", temperature=0.1)
    quick = AnalysisOptions(bootstrap=50, rerun_bootstrap=20)
    old_s = analyze(scratch, options=quick).frame["S"][0]
    claims = tmp_path / "claims.json"
    claims.write_text(json.dumps({"format": "toolkit-claims/1", "paper": "test", "dataset": "twoversions",
                                  "claims": [{"id": "T1-gpt-4o-S", "table": "Table 1", "model": "gpt-4o",
                                              "variant": "base", "metric": "S", "printed": f"{old_s:.3f}"}]}))
    result = audit(dataset, source=folder, claims=claims, store=Store(tmp_path / "store"), progress=False,
                   options=quick)
    row = result.table.row(0, named=True)
    assert row["status"] == "FAIL"
    assert row["note"].startswith("printed value reproduced by data/gpt-4o.csv @ b4feb66 of "
                                  "https://example.org/old-repo (earlier collection) (run mfq30/base@b4feb66/gpt-4o/")


def test_the_catalogue_carries_the_earlier_claude_haiku_collection():
    from toolkit.datasets.catalogue import get_dataset

    haiku = next(f for f in get_dataset("costa2025-benchmark").files if f.model == "claude-haiku-4-5")
    (v,) = haiku.versions
    assert v.commit == "b4feb663b0e6541c6727d1e808cbb68c3377853b" and v.path == "data/claude-haiku-4-5.csv"
    assert v.sha256 == "aabc736571cc527d108ea481439eda5e413c45b8e90dcf024aade4cc9be958f6" and v.bytes == 1571042
    assert v.url.startswith("https://raw.githubusercontent.com/bastoscostadavi/llm-moral-susceptibility/b4feb663")


def test_the_regression_example_for_users_repositories_runs(tmp_path):
    """docs/examples/test_regression.py as a user would drop it into their repository: a syrupy
    snapshot of `analyze --format csv` and a claims check, against their store."""
    work = tmp_path / "repo"
    (work / "tests").mkdir(parents=True)
    shutil.copy(ROOT / "docs" / "examples" / "test_regression.py", work / "tests" / "test_regression.py")
    env = {"TOOLKIT_STORE": str(DEMO), "TOOLKIT_CLAIMS": str(work / "claims.json")}
    draft = run_cli("claims", "draft", "--store", str(DEMO), "--out", str(work / "claims.json"))
    assert draft.returncode == 0, draft.stderr

    def pytest_run(*args: str) -> subprocess.CompletedProcess:
        import os

        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, "tests"],
                              cwd=work, capture_output=True, text=True, env={**os.environ, **env}, timeout=600)

    first = pytest_run("--snapshot-update")
    assert first.returncode == 0, first.stdout[-2000:]
    assert list((work / "tests" / "__snapshots__").glob("*.ambr"))
    second = pytest_run()
    assert second.returncode == 0 and "2 passed" in second.stdout, second.stdout[-2000:]
    snapshot_before = tree_bytes(work / "tests" / "__snapshots__")
    doc = json.loads((work / "claims.json").read_text())
    doc["claims"][0]["printed"] = "123.45"
    (work / "claims.json").write_text(json.dumps(doc))
    broken = pytest_run()
    assert broken.returncode == 1 and "1 failed, 1 passed" in broken.stdout
    assert "FAIL " + doc["claims"][0]["id"] in broken.stdout
    assert tree_bytes(work / "tests" / "__snapshots__") == snapshot_before


@pytest.mark.shared
def test_a_bundle_carries_the_persona_texts_to_the_reviewers_report(em_store, tmp_path):
    bundle = tmp_path / "gpt-4o.zip"
    res = run_cli("bundle", "--out", str(bundle), "--store", str(em_store.root), "--model", "gpt-4o", "--mode",
                  "persona", "--personas", str(EM / "personas.json"))
    assert res.returncode == 0 and "(1 runs," in res.stdout, res.stderr
    site = tmp_path / "site"
    assert run_cli("report", "--store", str(bundle), "--out", str(site), *FAST).returncode == 0
    persona = next((site / "runs").glob("r*/p7.html")).read_text()
    text = json.loads((EM / "personas.json").read_text())[7]
    assert f"<blockquote>{text}</blockquote>" in persona or text.replace("'", "&#x27;") in persona
    assert "carried in the bundle" in next((site / "runs").glob("r*.html")).read_text()


def test_a_bundle_member_named_outside_its_folders_is_refused(tmp_path):
    """A hostile bundle whose index is self-consistent but names a path with '..'."""
    import hashlib

    evil = b"not a store file"
    members = {"store/../escaped.json": {"bytes": len(evil), "sha256": hashlib.sha256(evil).hexdigest()}}
    from toolkit.hashing import canonical_json

    index = {"format": "toolkit-bundle/1", "runs": [], "members": members,
             "digest": hashlib.sha256(canonical_json(members).encode()).hexdigest()}
    bad = tmp_path / "evil.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("bundle.json", json.dumps(index))
        zf.writestr("store/../escaped.json", evil)
    res = run_cli("verify", str(bad))
    assert res.returncode == 1 and "would be written outside the bundle's folders" in res.stdout
    assert not (tmp_path / "escaped.json").exists()


def test_range_claims_check_the_smallest_and_largest_value_over_their_models(tmp_path):
    """'0.66 <= S <= 0.83 across 13 models' as claims: min_S and max_S over a models list."""
    store = _two_temperatures(tmp_path)
    csv = pl.read_csv(run_cli("analyze", "--format", "csv", *store, *FAST).stdout.encode())
    low, high = float(csv["S"].min()), float(csv["S"].max())
    assert low < high  # two different runs of the one model
    claims = tmp_path / "range.json"
    base = {"table": "text", "model": None, "variant": "simulated", "models": ["sim-0000"]}
    claims.write_text(json.dumps({"format": "toolkit-claims/1", "claims": [
        {**base, "id": "low", "metric": "min_S", "printed": f"{low:.3f}"},
        {**base, "id": "high", "metric": "max_S", "printed": f"{high:.3f}"},
        {**base, "id": "wrong", "metric": "max_S", "printed": f"{low:.3f}"},
        {**base, "id": "absent", "metric": "min_S", "printed": "0.5", "models": ["sim-0000", "nobody"]}]}))
    res = run_cli("audit", "--claims", str(claims), *store, "--format", "json", *FAST)
    status = {c["id"]: c["status"] for c in json.loads(res.stdout)["claims"]}
    assert status == {"low": "PASS", "high": "PASS", "wrong": "FAIL", "absent": "FAIL"}
