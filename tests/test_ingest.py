"""Importing what the world publishes (tolerant, still strict), the long format, one run never
blocking the others, and reading data back: show, export and the import-export round trip."""

from __future__ import annotations

import csv
import io
import json

import polars as pl
import pytest

from conftest import EM, LOGIT_CSV, ROOT, need_shared, run_cli, tree_bytes
from toolkit.analysis import analyze
from toolkit.analysis.options import AnalysisOptions
from toolkit.ingest.importer import import_paths
from toolkit.report import format_frame
from toolkit.report.export import export_runs
from toolkit.store import Store

DRAWS = {"options": AnalysisOptions(bootstrap=60, rerun_bootstrap=20)}


def _published(name: str = "gpt-4o_temp01.csv") -> tuple[list[str], list[list[str]]]:
    need_shared()
    with open(EM / "runs" / "base" / name, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def _write(path, header, rows, *, newline="\n", bom=False):
    buf = io.StringIO()
    csv.writer(buf, lineterminator=newline).writerows([header, *rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + buf.getvalue().encode("utf-8"))
    return path


def _metrics(store: Store) -> str:
    df = analyze(store, by_group=True, **DRAWS).frame
    return format_frame(df.drop("run_id"), "csv")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The published gpt-4o base run, imported as published: metrics and fingerprint."""
    header, rows = _published()
    root = tmp_path_factory.mktemp("ref")
    store = Store(root / "s")
    import_paths(store, [_write(root / "base" / "gpt-4o_temp01.csv", header, rows)])
    return _metrics(store), store.runs()[0].fingerprint


def _variants():
    header, rows = _published()
    cols = {name: i for i, name in enumerate(header)}

    def drop(name):
        keep = [i for i, h in enumerate(header) if h != name]
        return [header[i] for i in keep], [[r[i] for i in keep] for r in rows]

    shuffled = [5, 2, 0, 6, 3, 1, 4]
    yield "drop-failures", *drop("failures"), {}
    yield "drop-response", *drop("response"), {}
    yield "drop-collected_at", *drop("collected_at"), {}
    yield "shuffled", [header[i] for i in shuffled], [[r[i] for i in shuffled] for r in rows], {}
    yield "crlf-bom", header, rows, {"newline": "\r\n", "bom": True}
    yield "extra-columns", header + ["judge_score", "notes"], [r + ["0.5", "x"] for r in rows], {}
    multi = [list(r) for r in rows]
    multi[0][cols["response"]] = "4\nbecause it matters,\n\"really\""
    yield "multiline-response", header, multi, {}


@pytest.mark.parametrize("variant", [v[0] for v in _variants()] if EM.is_dir() else ["shared-missing"])
def test_tolerant_variants_give_the_same_metrics(tmp_path, reference, variant):
    """Each variant keeps every rating: the metrics are identical (same counts, same seeds).
    A dropped optional column is a note; columns that only describe a row leave the
    fingerprint alone when they are absent or reordered."""
    name, header, rows, opts = next(v for v in _variants() if v[0] == variant)
    src = _write(tmp_path / "base" / "gpt-4o_temp01.csv", header, rows, **opts)
    res = run_cli("import", str(src), "--store", str(tmp_path / "s"))
    assert res.returncode == 0, res.stderr
    store = Store(tmp_path / "s")
    assert _metrics(store) == reference[0]
    if name.startswith("drop-"):
        assert f"no '{name[5:]}' column" in res.stderr
    if name == "extra-columns":
        assert "ignored column(s): judge_score, notes" in res.stderr
    if name in ("shuffled", "crlf-bom", "extra-columns", "drop-collected_at"):
        assert store.runs()[0].fingerprint == reference[1]


def test_uneven_repetitions_absent_personas_and_items(tmp_path):
    """Cells with 15 repetitions next to cells with 10, a persona absent, an item absent for one
    persona: the run imports, and the counts follow the rows (checked against a direct count)."""
    header, rows = _published()
    cols = {name: i for i, name in enumerate(header)}
    kept = [r for r in rows if r[cols["persona_id"]] != "7"
            and not (r[cols["persona_id"]] == "8" and r[cols["question_id"]] == "30")]
    extra = [[r[cols["persona_id"]], r[cols["question_id"]], str(int(r[cols["run_index"]]) + 10), *r[3:]]
             for r in kept if r[cols["persona_id"]] == "3" and int(r[cols["run_index"]]) <= 5]
    src = _write(tmp_path / "base" / "gpt-4o_temp01.csv", header, kept + extra)
    store = Store(tmp_path / "s")
    import_paths(store, [src])
    df = analyze(store, **DRAWS).frame
    valid = pl.DataFrame(kept + extra, schema=header, orient="row").filter(pl.col("rating") != "-1")
    per_cell = valid.group_by("persona_id", "question_id").len()
    assert df["max_reps"][0] == per_cell["len"].max() == 15
    complete = per_cell.group_by("persona_id").len().filter(pl.col("len") == 30)
    assert df["personas"][0] == len(complete) <= 98


def test_strict_where_it_matters_long_format(tmp_path):
    """Bad ratings and unknown items in a long-format file: one line naming file and line (or
    Parquet row), exit 2, store unchanged."""
    good = tmp_path / "good.csv"
    good.write_text("pid,qid,score\n0,1,3\n0,2,4\n1,1,2\n1,2,5\n")
    s = tmp_path / "s"
    ok = run_cli("import", str(good), "--column-map", "persona=pid,item=qid,rating=score", "--model", "m",
                 "--variant", "v", "--temperature", "0.5", "--store", str(s))
    assert ok.returncode == 0, ok.stderr
    before = tree_bytes(s)
    cases = [("pid,qid,score\n0,1,3\n0,2,3.5\n", ":3: column 'rating': '3.5' is not an integer"),
             ("pid,qid,score\n0,1,3\n0,99,3\n", ":3: question_id 99 is not an item"),
             ("pid,qid,score,repetition\n0,1,3,1\n0,1,4,1\n", ":3: slot persona=0 item=1 repetition=1 appears"),
             ("pid,qid,score\n0,1,9\n", ":2: rating 9 is outside the scale")]
    for i, (text, message) in enumerate(cases):
        bad = tmp_path / f"bad{i}.csv"
        bad.write_text(text)
        res = run_cli("import", str(bad), "--column-map", "persona=pid,item=qid,rating=score", "--model", f"b{i}",
                      "--variant", "v", "--temperature", "0.5", "--store", str(s))
        assert res.returncode == 2 and message in res.stderr and f"bad{i}.csv" in res.stderr, res.stderr
        assert res.stderr.count("\n") == 1 and tree_bytes(s) == before
    for mapping, message in (("persnoa=pid,item=qid,rating=score", "unknown field(s) persnoa"),
                             ("persona=pid,persona=qid,rating=score", "two columns the name(s) persona")):
        res = run_cli("import", str(good), "--column-map", mapping, "--model", "typo", "--variant", "v",
                      "--temperature", "0.5", "--store", str(s))
        assert res.returncode == 2 and message in res.stderr and res.stderr.count("\n") == 1, res.stderr
        assert tree_bytes(s) == before
    pl.DataFrame({"pid": [0, 0], "qid": [1, 77], "score": [3, 3]}).write_parquet(tmp_path / "bad.parquet")
    res = run_cli("import", str(tmp_path / "bad.parquet"), "--column-map", "persona=pid,item=qid,rating=score",
                  "--model", "p", "--variant", "v", "--temperature", "0.5", "--store", str(s))
    assert res.returncode == 2 and "bad.parquet: row 2: question_id 77" in res.stderr, res.stderr
    assert tree_bytes(s) == before


def test_long_format_in_three_containers_matches_the_published_import(tmp_path, reference):
    """The same completions as a CSV with other column names, a Parquet file and JSON Lines:
    the same run (fingerprint) and the same metrics as the published CSV."""
    header, rows = _published()
    df = pl.DataFrame(rows, schema=header, orient="row").select(
        pl.col("persona_id").cast(pl.Int64).alias("pid"), pl.col("question_id").cast(pl.Int64).alias("qid"),
        pl.col("run_index").cast(pl.Int64).alias("rep"), pl.col("rating").cast(pl.Int64).alias("score"),
        pl.col("failures").cast(pl.Int64).alias("failures"), pl.col("response").alias("text"),
        pl.col("collected_at"))
    mapping = "persona=pid,item=qid,repetition=rep,rating=score,response=text"
    files = {"csv": tmp_path / "a.csv", "parquet": tmp_path / "a.parquet", "jsonl": tmp_path / "a.jsonl"}
    df.write_csv(files["csv"])
    df.write_parquet(files["parquet"])
    df.write_ndjson(files["jsonl"])
    for kind, path in files.items():
        s = tmp_path / f"s-{kind}"
        res = run_cli("import", str(path), "--column-map", mapping, "--model", "gpt-4o", "--variant", "base",
                      "--temperature", "0.1", "--store", str(s))
        assert res.returncode == 0, (kind, res.stderr)
        store = Store(s)
        assert store.runs()[0].fingerprint == reference[1], kind
        assert _metrics(store) == reference[0], kind


def test_one_partial_run_never_hides_the_others(tmp_path):
    """A partial run (93 rows: 10 items asked, one persona has them all) next to a complete one:
    analyze and compare report the complete run, name the partial one on stderr with the
    reason, and exit 1."""
    header, rows = _published()
    full = _write(tmp_path / "in" / "base" / "gpt-4o_temp01.csv", header, rows)
    part = _write(tmp_path / "in" / "base" / "tiny_temp01.csv", header, rows[:93])
    s = str(tmp_path / "s")
    assert run_cli("import", str(full), str(part), "--store", s).returncode == 0
    res = run_cli("analyze", "--bootstrap", "50", "--rerun-bootstrap", "10", "--format", "csv", "--store", s)
    assert res.returncode == 1
    assert "mfq30/base/gpt-4o/T0.1/persona" in res.stdout and "tiny" not in res.stdout
    assert "skipped: run mfq30/base/tiny/T0.1/persona: only 1 persona(s) have a valid rating on all 10 items" \
        in res.stderr, res.stderr
    ok = run_cli("analyze", "--model", "gpt-4o", "--bootstrap", "50", "--rerun-bootstrap", "10", "--store", s)
    assert ok.returncode == 0 and ok.stderr == ""


@pytest.mark.shared
def test_round_trip_every_shared_dataset(tmp_path):
    """import -> export -> import keeps every run's rows and fingerprint: the published CSV tree
    for all 25 shared runs (persona, self, logprob), Parquet and JSON Lines for the sampled ones."""
    a = Store(tmp_path / "a")
    import_paths(a, [EM / "runs", EM / "self"], temperature=0.1)
    import_paths(a, [LOGIT_CSV])
    original = {m.run_id: (m.fingerprint, m.rows) for m in a.runs()}
    assert len(original) == 25
    res = run_cli("export", "--out", str(tmp_path / "csv"), "--store", str(a.root))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "csv" / "insecure-code" / "gpt-4o-misaligned_temp01_self.csv").is_file()
    b = Store(tmp_path / "b")
    import_paths(b, [tmp_path / "csv"])
    assert {m.run_id: (m.fingerprint, m.rows) for m in b.runs()} == original
    sampled = [m for m in a.runs() if m.mode != "logprob"]
    for fmt in ("parquet", "jsonl"):
        done = export_runs(a, sampled, tmp_path / fmt, fmt)
        c = Store(tmp_path / f"c-{fmt}")
        import_paths(c, [d.path for d in done])
        assert {m.run_id: (m.fingerprint, m.rows) for m in c.runs()} == {m.run_id: original[m.run_id]
                                                                          for m in sampled}, fmt
    again = run_cli("export", "--out", str(tmp_path / "csv"), "--store", str(a.root))
    assert again.returncode == 2 and "overwrite" in again.stderr


def test_show_prints_what_the_model_said(tmp_path):
    """show's response and rating for a slot are the source file's (read independently)."""
    header, rows = _published()
    cols = {name: i for i, name in enumerate(header)}
    src = _write(tmp_path / "base" / "gpt-4o_temp01.csv", header, rows)
    s = str(tmp_path / "s")
    assert run_cli("import", str(src), "--store", s).returncode == 0
    row = next(r for r in rows if r[cols["persona_id"]] == "12" and r[cols["question_id"]] == "17"
               and r[cols["run_index"]] == "3")
    res = run_cli("show", "--persona", "12", "--item", "17", "--repetition", "3", "--store", s)
    assert res.returncode == 0, res.stderr
    assert "persona 12 | item 17 | repetition 3" in res.stdout
    assert f"rating {row[cols['rating']]} " in res.stdout or "no valid rating" in res.stdout
    assert f"response:\n  {row[cols['response']].splitlines()[0]}" in res.stdout
    assert row[cols["collected_at"]] in res.stdout and "gpt-4o_temp01.csv" in res.stdout
    as_json = json.loads(run_cli("show", "--persona", "12", "--item", "17", "--format", "json", "--store", s).stdout)
    assert [r["repetition"] for r in as_json] == list(range(1, 11))
    assert [str(r["rating"]) for r in as_json] == [r[cols["rating"]] for r in rows if r[cols["persona_id"]] == "12"
                                                   and r[cols["question_id"]] == "17"]


@pytest.mark.shared
def test_curves_name_an_unusable_logprob_run_and_report_the_others(tmp_path):
    """A logprob run with one persona next to the gemma run: curves reports gemma, names the
    small run on stderr and exits 1."""
    lines = LOGIT_CSV.read_text(encoding="utf-8").splitlines()
    tiny = tmp_path / "in" / "tiny_logprobs.csv"
    tiny.parent.mkdir()
    header = lines[0].split(",")
    first = [ln for ln in lines[1:] if ln.split(",")[header.index("persona_id")] == "0"]
    tiny.write_text("\n".join([lines[0], *first]) + "\n", encoding="utf-8")
    s = str(tmp_path / "s")
    assert run_cli("import", str(LOGIT_CSV), str(tiny), "--store", s).returncode == 0
    res = run_cli("curves", "--temperatures", "0.5,1.0", "--bootstrap", "20", "--format", "csv", "--store", s)
    assert res.returncode == 1, res.stderr
    assert "gemma-2-9b-it-local" in res.stdout and "tiny" not in res.stdout
    assert "skipped: run mfq30/" in res.stderr and "tiny" in res.stderr and "fewer than 2 personas" in res.stderr


def test_many_files_on_worker_processes_fail_as_one(tmp_path):
    """From 16 files on, workers are processes: a bad file among them still gives one line
    naming the file and line, exit 2, and no run in the store."""
    header = "persona_id,question_id,run_index,rating\n"
    folder = tmp_path / "in" / "base"
    folder.mkdir(parents=True)
    for i in range(17):
        rows = [f"{p},{q},1,{(p + q) % 6}" for p in range(2) for q in range(1, 31)]
        if i == 11:
            rows[40] = "1,11,1,seven"
        (folder / f"m{i:02d}_temp05.csv").write_text(header + "\n".join(rows) + "\n")
    s = tmp_path / "s"
    res = run_cli("import", str(folder), "--store", str(s))
    assert res.returncode == 2 and "m11_temp05.csv:42: column 'rating': 'seven' is not an integer" in res.stderr, \
        res.stderr
    assert res.stderr.count("\n") == 1
    assert not (s / "runs").exists() or not any((s / "runs").iterdir())
    assert not [p for p in s.rglob("*") if p.is_file() and "objects" in p.parts]  # written segments removed
    (folder / "m11_temp05.csv").unlink()
    ok = run_cli("import", str(folder), "--store", str(s))
    assert ok.returncode == 0 and len(Store(s).runs()) == 16 and Store(s).verify() == []


def test_show_prints_a_logprob_cells_digit_probabilities_and_top_tokens():
    """`show --mode logprob`: a logprob row's answer is its digits' probabilities (renormalised
    over the digits, as the logit method reads them) and the top of its top-k list, checked
    here against the stored values with the standard library."""
    import math

    from toolkit.store import Selection, Store

    res = run_cli("show", "--mode", "logprob", "--limit", "1")
    assert res.returncode == 0, res.stderr
    line = next(x for x in res.stdout.splitlines() if x.startswith("digit probabilities: "))
    shown = [float(part.split(": ")[1]) for part in line.removeprefix("digit probabilities: ").split(", ")]
    store = Store(ROOT / "parquet")
    run = Selection(mode="logprob").resolve(store)[0]
    row = store.read_run(run, ["persona_id", "item_id", "digit_logprobs", "top_logprobs"]).to_pylist()
    first = min(row, key=lambda r: (r["persona_id"], r["item_id"]))
    weights = [math.exp(v) for v in first["digit_logprobs"]]
    assert shown == [round(w / sum(weights), 3) for w in weights]
    top = json.loads(first["top_logprobs"])[0]
    assert f"top tokens: {json.dumps(top['token'])} {math.exp(top['logprob']):.3f}" in res.stdout
    assert run_cli("show", "--mode", "self", "--limit", "1").stdout.count("== ") == 1


def test_show_labels_digits_by_the_scale_and_survives_an_unreadable_top_list():
    """The digit labels are the instrument's ratings (a 1-7 scale starts at 1), and a stored
    top-k list that is not JSON (the row rule does not check it) is said to be so, not a crash."""
    from toolkit.report.completions import _logprob_lines

    lines = _logprob_lines([-0.5, None, -2.0], "not json", 1)
    assert lines[0].startswith("digit probabilities: 1: ") and "2: not in top-k" in lines[0] and "3: " in lines[0]
    assert lines[1] == "top tokens: (the stored list is not readable JSON)"
