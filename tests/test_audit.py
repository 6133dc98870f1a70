"""Audit: catalogue, claims, report and the failure modes (offline, --from ../shared)."""

from __future__ import annotations

import json
import shutil
import struct

import pytest

from conftest import EM, need_shared, run_cli
from toolkit.audit.claims import load_claims
from toolkit.datasets.catalogue import load_catalogue
from toolkit.hashing import sha256_file


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", data[16:24])


@pytest.mark.shared
def test_catalogue_digests_match_the_shared_copies():
    ds = load_catalogue()["costa2026-em"]
    assert len(ds.files) == 24 and ds.commit == "dbfb8b8bdeb60998036776818dfed95af3bb0dd4"
    for f in ds.files:
        folder = "runs" if f.mode == "persona" else "self"
        local = EM / folder / f.variant / f.name
        assert sha256_file(local) == f.sha256 and local.stat().st_size == f.bytes
        assert f.url.endswith(f"/{ds.commit}/{f.path}") and f.path == f"data/{f.variant}/{f.name}"


def test_benchmark_dataset_and_claims_are_wired():
    ds = load_catalogue()["costa2025-benchmark"]
    assert len(ds.files) == 15 and all(f.path.startswith("data/sampling/") for f in ds.files)
    claims = load_claims(ds.claims)
    assert len(claims.claims) == 60
    from toolkit.audit.claims import check_against_runs
    check_against_runs(claims, ds.runs())
    gemini = next(c for c in claims.claims if c.model == "gemini-2.5-flash" and c.metric == "S")
    assert gemini.printed == "1.043" and gemini.allowed() == pytest.approx(0.0005)


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    need_shared()
    report = tmp_path_factory.mktemp("report")
    res = run_cli("audit", "costa2026-em", "--from", str(EM), "--format", "json", "--report-dir", str(report),
                  "--jobs", "2")
    return res, report


# The two claims the paper's own data contradict: Appendix A bounds the failed attempts per slot
# by 0.01 for these runs, and their `failures` column averages 0.99 and 0.016 (GPT-4o-insecure's
# 0.54, from the same column, reproduces: the column is what the text counts).
KNOWN_FAILS = {"text-failed-attempts-deepseek-v3.1-insecure-at-most-0.01": "0.9876 <= 0.01: does not hold",
               "text-failed-attempts-gpt-4o-secure-at-most-0.01": "0.01563 <= 0.01: does not hold"}


def test_audit_passes_every_claim_but_the_two_its_data_contradict(audited):
    res, _ = audited
    assert res.returncode == 1, res.stderr[-2000:]  # a FAIL is an exit 1, by design
    doc = json.loads(res.stdout)
    claims = doc["claims"]
    assert len(claims) == 748 and doc["counts"]["FAIL"] == 2
    assert {c["id"]: c["note"] for c in claims if c["status"] == "FAIL"} == KNOWN_FAILS
    assert next(c for c in claims if c["id"] == "text-failed-attempts-gpt-4o-insecure")["status"] == "PASS"
    for c in claims:
        assert {"id", "table", "model", "variant", "metric", "printed", "recomputed", "status", "note"} <= c.keys()
        assert c["status"] in ("PASS", "WITHIN-SE", "UNVERIFIABLE") or c["id"] in KNOWN_FAILS
    # the numbers §4.1 quotes from the benchmark of arXiv 2511.08565 are counted, not left out
    unverifiable = [c for c in claims if c["status"] == "UNVERIFIABLE"]
    assert doc["counts"]["UNVERIFIABLE"] == len(unverifiable) == 291
    quoted = [c for c in unverifiable if c["table"].startswith("Section 4.1")]
    assert len(quoted) == 6 and all("costa2025-benchmark" in c["note"] and "--with costa2025-benchmark=DIR" in c["note"]
                                    and c["recomputed"] is None for c in quoted)
    # the Toxic rows of Table 3 and the per-persona table of Appendix C: listed with their reason
    toxic = [c for c in unverifiable if c["variant"].startswith("toxic")]
    assert len(toxic) == 4 * 5 * 2 + 4 * 8 * 6 and all("not published" in c["note"] for c in toxic)
    # every number the paper's LaTeX prints is accounted for
    cov = doc["coverage"]
    assert cov["counts"]["unaccounted"] == 0 and cov["unaccounted"] == []
    assert sum(cov["counts"].values()) == 858 and cov["counts"]["claimed"] == 474
    # the ordinal and derived claims of the text hold
    statements = {c["id"]: c for c in claims if c["metric"] == "expr"}
    assert len(statements) == 19 and all(c["status"] == "PASS" for k, c in statements.items() if k not in KNOWN_FAILS)
    assert "holds" in statements["ordinal-gpt-4o-twice-band"]["note"]
    tables = {c["table"] for c in claims}
    assert {"Table 1 (S)", "Table 2 (R)", "Table 3 (self profiles)", "Table 4 (R per foundation)",
            "Table 5 (S per foundation)", "Abstract"} <= tables
    abstract = {c["metric"]: c for c in claims if c["table"] == "Abstract"}
    assert abstract["mean_delta_S_pct"]["status"] == "PASS" and abstract["mean_delta_R_pct"]["status"] == "PASS"
    assert abstract["mean_delta_sigma_bar_pct"]["status"] == "PASS"
    # a WITHIN-SE is a printed digit a hair past rounding, never a large miss
    assert all(abs(c["diff_units"]) < 0.7 for c in claims if c["status"] == "WITHIN-SE")


@pytest.mark.shared
def test_terminal_view_lists_counts_and_only_the_claims_that_are_not_pass(tmp_path):
    res = run_cli("audit", "costa2026-em", "--from", str(EM), "--store", str(tmp_path / "s"), "--jobs", "2")
    assert res.returncode == 1, res.stderr[-1000:]
    lines = res.stdout.splitlines()
    assert lines[-3].startswith("audit costa2026-em") and "FAIL 2" in lines[-3]
    assert lines[-2].startswith("coverage of ") and lines[-2].endswith(", 0 unaccounted")
    listed = [line for line in lines[2:-3] if line.strip() and not line.startswith("  ")]
    assert listed and all(" PASS" not in line and "UNVERIFIABLE" not in line for line in listed)  # WITHIN-SE, FAIL
    reasons = [line for line in lines if line.startswith("  UNVERIFIABLE ")]  # one line per reason, not per claim
    assert 3 <= len(reasons) <= 6 and sum(int(r.split()[1].rstrip(":")) for r in reasons) == 291


def test_report_folder(audited):
    _, report = audited
    html = (report / "index.html").read_text()
    for name in ("bars_S.png", "bars_R.png", "radar_profiles.png"):
        assert f'src="figures/{name}"' in html
        w, h = png_size(report / "figures" / name)
        assert w >= 800 and h >= 300
    assert png_size(report / "figures" / "bars_R.png") == (1100, 400)
    tex = (report / "tables.tex").read_text()
    assert tex.count("\\begin{tabular}") == 6 and "$\\pm$" in tex
    md = (report / "report.md").read_text()
    assert "![" in md and "## Claims" in md
    # the paired changes: every insecure-code fine-tune lowers R, with an interval below 0
    paired = md[md.index("Paired changes from base"):]
    insecure = [line for line in paired.splitlines()[:14] if "| Insecure |" in line]
    assert len(insecure) == 4
    for line in insecure:
        delta_r = line.split("|")[5]
        assert delta_r.strip().startswith("-") and "[-" in delta_r and ", -" in delta_r
    assert json.loads((report / "claims.json").read_text())["counts"]["FAIL"] == 2
    page = (report / "audit.html").read_text()
    assert "Coverage: coverage of " in page and "858 numbers printed, 474 checked" in page and "0 unaccounted" in page
    assert 'href="audit.html"' in html and "PASS" in html  # the overview links the claims page with its counts


def test_audit_page_is_a_page_of_the_report_site(audited, browser):
    _, report = audited
    browser.events.clear()
    browser.open((report / "audit.html").as_uri())
    assert browser.evaluate("document.querySelectorAll('#claims tbody tr').length") == 748
    statuses = browser.evaluate("Array.from(document.querySelectorAll('#claims tbody tr td:nth-last-child(2)'))"
                                ".map(c => c.textContent)")
    assert set(statuses) == {"PASS", "WITHIN-SE", "FAIL", "UNVERIFIABLE"}
    browser.open(browser.evaluate("document.querySelector('nav a').href"))  # back to the overview
    assert browser.evaluate("document.querySelectorAll('#metrics tbody tr').length") == 72
    assert browser.problems() == []


def _subset_claims(tmp_path, edit=None, drop_se=True, **changes):
    src = load_claims("costa2026-em.json")
    raw = json.loads((__import__("importlib").resources.files("toolkit") / "data" / "claims" /
                      "costa2026-em.json").read_text())
    keep = [c for c in raw["claims"] if c["table"] in ("Table 1 (S)", "Table 2 (R)", "Abstract")
            and not (drop_se and c["metric"].endswith("_se"))]
    if edit:
        for c in keep:
            if c["id"] == edit[0]:
                c["printed"] = edit[1]
    raw["claims"] = keep
    raw.update(changes)
    path = tmp_path / "claims.json"
    path.write_text(json.dumps(raw))
    assert src.claims
    return path


@pytest.mark.shared
def test_edited_claim_fails_by_name(tmp_path):
    path = _subset_claims(tmp_path, edit=("T2-gpt-4o-base-R", "11.75"))
    res = run_cli("audit", "costa2026-em", "--from", str(EM), "--claims", str(path), "--format", "json",
                  "--bootstrap", "300", "--rerun-bootstrap", "50")
    assert res.returncode == 1
    doc = json.loads(res.stdout)
    failed = [c["id"] for c in doc["claims"] if c["status"] == "FAIL"]
    assert failed == ["T2-gpt-4o-base-R"]
    row = next(c for c in doc["claims"] if c["id"] == "T2-gpt-4o-base-R")
    assert row["recomputed"] == pytest.approx(9.7509, abs=1e-4) and row["printed"] == "11.75"


@pytest.mark.shared
def test_bad_inputs_exit_2(tmp_path):
    res = run_cli("audit", "no-such-dataset", "--from", str(EM))
    assert res.returncode == 2 and "unknown dataset" in res.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    res = run_cli("audit", "costa2026-em", "--from", str(EM), "--claims", str(bad))
    assert res.returncode == 2 and "malformed claims file" in res.stderr
    raw = json.loads(_subset_claims(tmp_path).read_text())
    raw["claims"][0]["model"] = "gpt-5"
    stray = tmp_path / "stray.json"
    stray.write_text(json.dumps(raw))
    res = run_cli("audit", "costa2026-em", "--from", str(EM), "--claims", str(stray))
    assert res.returncode == 2 and "not in the dataset" in res.stderr and raw["claims"][0]["id"] in res.stderr
    raw["claims"][0].update(model="gpt-4o", metric="charisma")
    stray.write_text(json.dumps(raw))
    res = run_cli("audit", "costa2026-em", "--from", str(EM), "--claims", str(stray))
    assert res.returncode == 2 and "unknown metric" in res.stderr
    # a missing local file, and a file whose bytes differ
    partial = tmp_path / "partial"
    shutil.copytree(EM / "runs", partial / "runs")
    res = run_cli("audit", "costa2026-em", "--from", str(partial))
    assert res.returncode == 2 and "missing file" in res.stderr and "_self.csv" in res.stderr
    shutil.copytree(EM / "self", partial / "self")
    victim = partial / "runs" / "base" / "gpt-4o_temp01.csv"
    victim.write_bytes(victim.read_bytes().replace(b"\n0,1,1,3,", b"\n0,1,1,4,", 1))
    res = run_cli("audit", "costa2026-em", "--from", str(partial))
    assert res.returncode == 2 and "SHA-256 mismatch for gpt-4o_temp01.csv" in res.stderr
    # the dataset §4.1 quotes is checked before any work: a folder without its files is refused
    res = run_cli("audit", "costa2026-em", "--from", str(EM), "--with", f"costa2025-benchmark={tmp_path}")
    assert res.returncode == 2 and "missing file claude-haiku-4-5_temp01.csv" in res.stderr
    res = run_cli("audit", "costa2026-em", "--from", str(EM), "--with", f"costa2026-em={EM}")
    assert res.returncode == 2 and "no claim of claims/costa2026-em.json quotes that dataset" in res.stderr


def test_benchmark_audit_without_its_data_is_a_clear_error(tmp_path):
    res = run_cli("audit", "costa2025-benchmark", "--from", str(tmp_path))
    assert res.returncode == 2 and "missing file" in res.stderr


@pytest.mark.shared
def test_fetch_from_folder_and_paper_table_latex(tmp_path):
    store = tmp_path / "s"
    res = run_cli("fetch", "costa2026-em", "--from", str(EM), "--store", str(store), "--format", "csv")
    assert res.returncode == 0 and res.stdout.count("added") == 24
    res = run_cli("paper-table", "2", "--format", "latex", "--store", str(store), "--bootstrap", "200",
                  "--rerun-bootstrap", "50")
    assert res.returncode == 0
    assert "\\begin{tabular}" in res.stdout and "14.48 $\\pm$" in res.stdout and "(-66\\%)" in res.stdout
    res = run_cli("paper-table", "3", "--format", "csv", "--store", str(store))
    assert res.returncode == 0 and "DeepSeek-V3.1,Base,4.50 ± 0.00,4.82 ± 0.05" in res.stdout


def test_download_path_checks_digests(tmp_path):
    """The real download code against a real HTTP server on 127.0.0.1 (no internet here)."""
    import hashlib
    import threading
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from toolkit.datasets.catalogue import DatasetFile
    from toolkit.datasets.fetch import _download
    from toolkit.errors import ToolkitError

    served = tmp_path / "www"
    served.mkdir()
    body = b"persona_id,question_id,run_index,rating,failures,response,collected_at\n0,1,1,3,0,3,t\n"
    (served / "m_temp01.csv").write_bytes(body)
    handler = partial(SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_port}/m_temp01.csv"
    try:
        good = DatasetFile("data/base/m_temp01.csv", url, hashlib.sha256(body).hexdigest(), len(body), "m", "base",
                           0.1, "persona")
        path = _download(good, tmp_path / "cache" / good.path, progress=False)
        assert path.read_bytes() == body
        bad = DatasetFile("data/base/m_temp01.csv", url, "0" * 64, len(body), "m", "base", 0.1, "persona")
        with pytest.raises(ToolkitError, match=r"SHA-256 mismatch for downloaded m_temp01\.csv"):
            _download(bad, tmp_path / "cache2" / bad.path, progress=False)
        assert not (tmp_path / "cache2" / bad.path).exists()  # nothing kept from a bad download
    finally:
        srv.shutdown()
