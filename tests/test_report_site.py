"""`toolkit report`: the static site, read the way a person reads it — in headless Chromium,
from a file URL — plus what must hold for any folder it writes (links resolve, bytes are
reproducible, nothing replaces a folder that is not a report, a broken run is named)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import polars as pl
import pytest

from browser import Browser
from conftest import EM, ROOT, run_cli, tree_bytes

DEMO = ROOT / "parquet"
FAST = ("--bootstrap", "200", "--rerun-bootstrap", "50")


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Where the screenshots go: $TOOLKIT_SCREENSHOTS, else a temporary folder (never the repo)."""
    given = os.environ.get("TOOLKIT_SCREENSHOTS")
    return Path(given) if given else tmp_path_factory.mktemp("screenshots")


def _report(out: Path, *args: str) -> Path:
    res = run_cli("report", "--out", str(out), *FAST, *args)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.startswith(f"report: {out / 'index.html'}")
    return out


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory) -> Path:
    return _report(tmp_path_factory.mktemp("demo") / "site", "--store", str(DEMO))


@pytest.fixture(scope="module")
def em_site(tmp_path_factory, em_store) -> Path:
    return _report(tmp_path_factory.mktemp("em") / "site", "--store", str(em_store.root), "--personas",
                   str(EM / "personas.json"), "--jobs", "2")


def _expected_metrics(store: Path) -> pl.DataFrame:
    res = run_cli("analyze", "--by", "group", "--format", "csv", "--store", str(store), *FAST)
    assert res.returncode == 0, res.stderr
    return pl.read_csv(res.stdout.encode())


def _look(b: Browser, site: Path, shots: Path, name: str, persona_text: str | None) -> None:
    """Overview → run page → persona page, as a reader clicks through; every page clean."""
    b.events.clear()
    b.open((site / "index.html").as_uri())
    images = b.evaluate("Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth, "
                        "i.naturalHeight])")
    assert images, "the overview shows figures"
    for src, complete, w, h in images:
        assert complete and w >= 300 and h >= 300, f"{src} did not decode to a real figure ({w}×{h})"
    b.screenshot(shots / f"{name}-overview.png")
    run_link = b.evaluate("document.querySelector('#metrics tbody a').href")
    b.open(run_link)
    assert b.evaluate("document.querySelector('h1').textContent").startswith("Run ")
    b.screenshot(shots / f"{name}-run.png")
    persona_link = b.evaluate("document.querySelector('#personas tbody a').href")
    b.open(persona_link)
    assert b.evaluate("document.querySelector('h1').textContent").startswith("Persona ")
    assert b.evaluate("document.querySelectorAll('#ratings tbody tr').length") == 30
    if persona_text is not None:
        assert b.evaluate("document.querySelector('blockquote').textContent") == persona_text
    b.screenshot(shots / f"{name}-persona.png")
    b.open((site / "runs.html").as_uri())
    assert b.evaluate("document.querySelectorAll('#runs tbody tr').length") == len(list((site / "runs").glob("*.html")))
    assert b.problems() == [], "the pages logged errors, failed loads or exceptions"


def _metrics_rows(b: Browser, site: Path) -> list[list[str]]:
    b.open((site / "index.html").as_uri())
    return b.evaluate("Array.from(document.querySelectorAll('#metrics tbody tr')).map(r => "
                      "Array.from(r.cells).map(c => c.textContent))")


def test_demo_store_site_in_a_browser(browser, demo_site, shots):
    demo20 = json.loads((ROOT / "toolkit" / "personas" / "demo20.json").read_text())
    first_persona = (demo20["personas"] if isinstance(demo20, dict) else demo20)[0]
    _look(browser, demo_site, shots, "demo", first_persona)
    _check_metrics(_metrics_rows(browser, demo_site), _expected_metrics(DEMO))


def _check_metrics(rows: list[list[str]], expected: pl.DataFrame) -> None:
    """The page's metrics table holds the rows `analyze --by group` gives, and its S is that
    value rounded (the page shows the analysis, it does not recompute it)."""
    assert [(r[0], r[1], r[4]) for r in rows] == list(zip(expected["model"], expected["variant"], expected["group"]))
    assert [r[3] for r in rows] == [run_id.rsplit("/", 1)[1] for run_id in expected["run_id"]]  # the mode column
    for r, s in zip(rows, expected["S"]):
        shown = r[5].split(" ± ")[0]
        assert abs(float(shown) - s) <= 0.5 * 10 ** -len(shown.split(".")[1]) + 1e-12


@pytest.mark.shared
def test_em_store_site_in_a_browser(browser, em_site, em_store, shots):
    personas = json.loads((EM / "personas.json").read_text())
    _look(browser, em_site, shots, "em", personas[0])
    rows = _metrics_rows(browser, em_site)
    assert len(rows) == 12 * 6  # all + five foundations
    _check_metrics(rows, _expected_metrics(em_store.root))
    browser.open((em_site / "index.html").as_uri())
    assert browser.evaluate("document.querySelectorAll('#comparison tbody tr').length") == 12
    assert browser.evaluate("document.querySelectorAll('#retention tbody tr').length") == 12


def _links(site: Path) -> list[tuple[Path, str]]:
    out = []
    for page in site.rglob("*.html"):
        for ref in re.findall(r'(?:href|src)="([^"#]+)"', page.read_text(encoding="utf-8")):
            out.append((page, ref))
    return out


def test_every_link_and_image_of_the_site_resolves(demo_site):
    links = _links(demo_site)
    assert len(links) > 50
    for page, ref in links:
        assert not re.match(r"[a-z]+://", ref), f"{page.name} points outside the folder: {ref}"
        assert (page.parent / ref).resolve().is_file(), f"{page.relative_to(demo_site)} links to missing {ref}"


def test_same_store_same_site_bytes(demo_site, tmp_path):
    again = _report(tmp_path / "again", "--store", str(DEMO))
    assert tree_bytes(again) == tree_bytes(demo_site)


def test_logprob_pages_show_digit_probabilities_not_ratings(demo_site):
    run = next(p for p in (demo_site / "runs").glob("*.html") if "/logprob" in p.read_text())
    persona = run.with_suffix("") / "p0.html"
    text = persona.read_text()
    assert "P(0)" in text and "P(5)" in text and "Stored responses" not in text and "unparseable" not in text
    table = text[text.index('id="ratings"'):text.index("</table>", text.index('id="ratings"'))]
    rows = [[float(x) for x in re.findall(r'<td class="num">([^<]+)</td>', row)] for row in table.split("<tr>")[2:]]
    assert len(rows) == 30
    for probs in rows:  # one distribution over the six digits per item
        assert len(probs) == 6 and all(0 <= p <= 1 for p in probs) and abs(sum(probs) - 1) <= 0.006


def test_an_existing_folder_that_is_not_a_report_is_left_alone(tmp_path):
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("do not lose me")
    res = run_cli("report", "--out", str(precious), "--store", str(DEMO), *FAST)
    assert res.returncode == 2 and "this command did not write" in res.stderr
    assert tree_bytes(precious) == {"chapter1.tex": b"do not lose me"}
    assert [p.name for p in tmp_path.iterdir()] == ["thesis"]  # no partial folder left behind


def test_a_run_that_cannot_be_read_is_named_and_the_rest_reported(tmp_path):
    store = tmp_path / "store"
    shutil.copytree(DEMO, store)
    manifest = next(p for p in (store / "runs").glob("*.json") if "self" in p.name)
    obj = json.loads(manifest.read_text())["segments"][0]["object"]
    segment = next((store / "objects").rglob(f"{obj}*"))
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0xFF
    segment.write_bytes(bytes(data))
    res = run_cli("report", "--out", str(tmp_path / "site"), "--store", str(store), *FAST)
    assert res.returncode == 1
    assert "skipped: run mfq30/base/SmolLM2-135M-Instruct/T0.7/self" in res.stderr
    index = (tmp_path / "site" / "index.html").read_text()
    assert "skipped: run mfq30/base/SmolLM2-135M-Instruct/T0.7/self" in index
    assert 'id="metrics"' in index  # the logprob run is still reported


@pytest.mark.shared
def test_persona_texts_need_their_file_for_imported_runs(em_store, tmp_path):
    site = _report(tmp_path / "site", "--store", str(em_store.root), "--model", "gpt-4o", "--mode", "persona")
    run = next((site / "runs").glob("*.html"))
    assert "pass --personas FILE" in run.read_text()
    persona = next(run.with_suffix("").glob("p*.html")).read_text()
    assert "text not available" in persona


def test_pages_show_no_markdown_and_every_run_says_who_answered_it(demo_site):
    """HTML, not Markdown, on every page (no stray backticks); the runs page's personas column
    names each run's persona set, or says why there is none."""
    for page in demo_site.rglob("*.html"):
        assert "`" not in page.read_text(encoding="utf-8"), page
    runs = (demo_site / "runs.html").read_text(encoding="utf-8")
    body = runs.split('id="runs"', 1)[1]
    for row in body.split("<tr>")[2:]:
        cells = row.split("</td>")
        assert any(("demo20" in c or "none (a run without personas)" in c or "not recorded" in c) for c in cells), row


@pytest.mark.shared
def test_em_site_is_small_enough_to_attach_and_loses_no_page_or_answer(em_site, em_store):
    """Issue 29: the EM site was 56 MB (1,200 persona pages, each repeating every bare-digit
    response, the item texts and the stylesheet). It is under 10 MB now, with every page, and
    every response that is more than its rating is still shown, with its repetitions."""
    files = [p for p in em_site.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 10_000_000
    persona_runs = [m for m in em_store.runs() if m.mode == "persona"]
    pages = list(em_site.glob("runs/*/p*.html"))
    assert len(pages) == sum(100 for _ in persona_runs) == 1200
    css = (em_site / "style.css").read_text()
    assert "font-family" in css and all('href="../../style.css"' in p.read_text() for p in pages[:50])
    # a persona page of the run whose answers carry text after the rating keeps every distinct text
    run = next(m for m in persona_runs if m.model == "deepseek-v3.1-insecure")
    import html as h

    rows = em_store.read_run(run, ["persona_id", "item_id", "response", "rating"]).to_pylist()
    worded = [r for r in rows if r["response"].strip() != str(r["rating"])]
    pid = worded[0]["persona_id"]
    page = next(p for p in pages if p.name == f"p{pid}.html" and f"{run.run_id}</a>" in p.read_text())
    html = page.read_text()
    texts = {r["response"] for r in worded if r["persona_id"] == pid}
    assert texts and all(f"<pre>{h.escape(t)}</pre>" in html for t in texts)
    assert f"{30 * 10 - sum(r['persona_id'] == pid for r in worded)} of 300 responses are their rating alone" in html
    # gpt-4o-misaligned was asked again often: its pages show the failed attempts per repetition
    misaligned = next(m for m in persona_runs if m.model == "gpt-4o-misaligned")
    some = [p for p in pages if f"{misaligned.run_id}</a>" in p.read_text()]
    assert any("<th>failed attempts</th>" in p.read_text() for p in some)
