"""`claims coverage` and the claim expressions: the LaTeX tokenizer, the grammar's refusals, an
edited claim failing with its reason, a number added to the paper being found, and the
docs/claims.md walkthrough followed for a second paper from scratch."""

from __future__ import annotations

import io
import json
import shutil

import polars as pl
import pytest

from conftest import EM, need_shared, run_cli
from toolkit.audit.claims import RUN_METRICS, SELF_METRICS, VARIANT_METRICS
from toolkit.audit.expr import ExprError, Ref, evaluate, parse
from toolkit.audit.latex import numbers_of

METRICS = frozenset(RUN_METRICS | SELF_METRICS | VARIANT_METRICS)

SAMPLE = r"""
\documentclass{article}
\usepackage[width=3pt]{geometry}  % the preamble is never read: 3
\begin{document}
\begin{abstract}
Fine-tuning raises $S$ by $55\%$ on average and cuts $R$ by 65\% across 13 models; GPT-4o and MFQ-30.
\end{abstract}
\section{Results}
\label{sec:results}
We ask $30{,}000$ questions at $T = 0.1$ on a 0--5 scale (see Eq.~\eqref{eq:one} and \citep{ref2025}).
The excess is $-26$pp ($-9\%$, $+2\%$) with a learning rate of $2 \times 10^{-4}$; $\bar\sigma = 1/R$.
% a comment: 99
\begin{equation}
  S = \frac{1}{|Q|} \sum_q \tau_q^2
\end{equation}
\begin{table}[h]
  \caption{Values over 10 repetitions.}
  \label{tab:main}
  \begin{tabular}{l cc}
    Model & Base & Secure \\
    \midrule
    Qwen3-235B & $0.79 \pm 0.03$ & $0.84$ ($+6\%$) \\
  \end{tabular}
\end{table}
\end{document}
"""


def test_the_tokenizer_reads_numbers_as_the_paper_prints_them():
    nums = numbers_of(SAMPLE)
    got = [(n.value, n.unit, n.where, n.kind) for n in nums]
    assert got == [
        ("55", "%", "abstract", "text"), ("65", "%", "abstract", "text"), ("13", "", "abstract", "text"),
        ("30000", "", "sec:results", "text"), ("0.1", "", "sec:results", "text"),
        ("0", "", "sec:results", "text"), ("5", "", "sec:results", "text"),  # a range 0--5: no sign on the 5
        ("-26", "pp", "sec:results", "text"), ("-9", "%", "sec:results", "text"), ("+2", "%", "sec:results", "text"),
        ("2e-4", "", "sec:results", "text"),
        ("10", "", "tab:main", "caption"),
        ("0.79", "", "tab:main", "cell"), ("0.03", "", "tab:main", "cell"), ("0.84", "", "tab:main", "cell"),
        ("+6", "%", "tab:main", "cell"),
    ]
    cells = [n for n in nums if n.kind == "cell"]
    assert [(n.row, n.column) for n in cells] == [("Qwen3-235B", 2), ("Qwen3-235B", 2), ("Qwen3-235B", 3),
                                                  ("Qwen3-235B", 3)]
    assert nums[3].line == 10 and cells[0].line == 22


@pytest.mark.parametrize("text, message", [
    ("S(model=\"a\") > ", "unexpected end"),
    ("(S(model=\"a\") > 1", "expected ')'"),
    ("S(model=\"a\")) > 1", "unexpected ')'"),
    ("Q(model=\"a\") > 1", "unknown name 'Q'"),
    ("__import__(\"os\") > 1", "unknown name '__import__'"),
    ("S(model=\"a\").real > 1", "unexpected '.'"),
    ("S.__class__", "unexpected '.'"),
    ("S[0] > 1", "unexpected '['"),
    ("S(model=a) > 1", "must be a string"),
    ("S(colour=\"a\") > 1", "a metric takes model"),
    ("S(model=\"*\") > 1", "wrap it in min, max or mean"),
    ("S(model=\"a\", model=\"b\") > 1", "model given twice"),
    ("lambda: 1", "unexpected ':'"),
    ("lambda(1) > 0", "unknown name 'lambda'"),
    ("1 > 0; 2", "unexpected ';'"),
])
def test_the_grammar_refuses(text, message):
    with pytest.raises(ExprError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("*", r"\*").replace(".", r"\.")):
        parse(text, METRICS)


def test_expressions_evaluate_by_hand():
    values = {("S", "a"): [1.0], ("S", "b"): [3.0], ("S", "*"): [1.0, 3.0, 2.0]}

    def lookup(ref: Ref) -> list[float]:
        return values.get((ref.metric, dict(ref.keys)["model"]), [])

    assert evaluate(parse('S(model="b") / S(model="a") - 1', METRICS), lookup) == 2.0
    assert evaluate(parse('min(S(model="*")) > 0.5 and max(S(model="*")) < 2 * 2', METRICS), lookup) is True
    assert evaluate(parse('mean(S(model="*")) == 2', METRICS), lookup) is True
    assert evaluate(parse('0 < S(model="a") < 1 or not S(model="b") >= 3', METRICS), lookup) is False
    assert evaluate(parse('-S(model="a") + abs(-2) * 3', METRICS), lookup) == 5.0
    with pytest.raises(ExprError, match="no value in the data"):
        evaluate(parse('S(model="c") > 1', METRICS), lookup)


def _em_claims(tmp_path, edit):
    from importlib import resources

    doc = json.loads(resources.files("toolkit").joinpath("data/claims/costa2026-em.json").read_text())
    edit(doc)
    path = tmp_path / "claims.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.shared
def test_an_edited_ordinal_claim_fails_with_its_reason(tmp_path):
    need_shared()

    def tighten(doc):
        for c in doc["claims"]:
            if c["id"] == "ordinal-gpt-4o-twice-band":
                c["expr"] = c["expr"].replace("2 * 0.83", "3 * 0.83")

    claims = _em_claims(tmp_path, tighten)
    res = run_cli("audit", "costa2026-em", "--from", str(EM), "--claims", str(claims), "--format", "json",
                  "--bootstrap", "20", "--rerun-bootstrap", "0", "--jobs", "2")
    assert res.returncode == 1
    row = next(c for c in json.loads(res.stdout)["claims"] if c["id"] == "ordinal-gpt-4o-twice-band")
    assert row["status"] == "FAIL" and row["note"].endswith("> 2.49: does not hold")  # 3 x 0.83
    assert row["note"].startswith("1.68")  # GPT-4o-insecure's S, the side that falls short


@pytest.mark.shared
def test_coverage_of_the_paper_and_of_a_copy_with_a_number_added(tmp_path):
    need_shared()
    tex = EM / "paper" / "main.tex"
    ok = run_cli("claims", "coverage", "--source", str(tex), "--claims", "costa2026-em.json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip().endswith(", 0 unaccounted") and "858 numbers printed" in ok.stdout
    copy = tmp_path / "main.tex"
    lines = tex.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("Figure~\\ref{fig:bars_s} shows"))
    lines.insert(at + 1, "In a follow-up run GPT-4o-insecure reached $S = 1.97$, and 100 personas were kept.")
    copy.write_text("\n".join(lines) + "\n")
    found = run_cli("claims", "coverage", "--source", str(copy), "--claims", "costa2026-em.json")
    assert found.returncode == 1
    assert found.stdout.splitlines()[0] == f"{copy}:{at + 2}: 1.97 at sec:susceptibility (text)"
    assert "100 at sec:susceptibility" in found.stdout and ", 2 unaccounted" in found.stdout
    js = json.loads(run_cli("claims", "coverage", "--source", str(copy), "--claims", "costa2026-em.json",
                            "--format", "json").stdout)
    assert js["counts"]["unaccounted"] == 2 and js["counts"]["unverifiable"] == 285


SECOND = r"""\documentclass{article}
\begin{document}
\section{Results}
\label{sec:results}
We simulated 2 models, 20 personas each, 3 repetitions a question. The mean $S$ is VALUE_MEAN.
\begin{table}[h]
  \caption{Susceptibility and robustness.}
  \label{tab:metrics}
  \begin{tabular}{l cc}
    Model & $S$ & $R$ \\
    ROWS
  \end{tabular}
\end{table}
Human raters agreed in $87\%$ of cases.
\end{document}
"""


def test_the_walkthrough_drafts_claims_for_a_second_paper(tmp_path):
    """docs/claims.md, "Claims for a new paper", step by step on a paper of two simulated runs."""
    store = tmp_path / "store"
    assert run_cli("simulate", "--runs", "2", "--persona-count", "20", "--repetitions", "3", "--store",
                   str(store)).returncode == 0
    an = pl.read_csv(io.StringIO(run_cli("analyze", "--store", str(store), "--format", "csv").stdout))
    rows = [(r["model"], f"{r['S']:.2f}", f"{r['R']:.2f}") for r in an.iter_rows(named=True)]
    mean_s = f"{sum(float(s) for _, s, _ in rows) / 2:.2f}"
    tex = tmp_path / "paper.tex"
    body = "\n".join(f"    {m} & ${s}$ & ${r}$ \\\\" for m, s, r in rows)
    tex.write_text(SECOND.replace("ROWS", body).replace("VALUE_MEAN", f"${mean_s}$"))
    claims = tmp_path / "claims.json"
    # step 1: an empty claims file; coverage lists every printed number
    doc: dict = {"format": "toolkit-claims/2", "paper": "A second paper", "dataset": None, "claims": []}
    claims.write_text(json.dumps(doc))
    first = run_cli("claims", "coverage", "--source", str(tex), "--claims", str(claims))
    assert first.returncode == 1 and ", 9 unaccounted" in first.stdout
    # step 2: one claim per table cell, `where` naming the table's label
    for m, s, r in rows:
        for metric, printed in (("S", s), ("R", r)):
            doc["claims"].append({"id": f"{m}-{metric}", "table": "Table 1", "model": m, "variant": "simulated",
                                  "metric": metric, "printed": printed, "where": "tab:metrics"})
    # step 3: a number of the text that the data can check, as an expression
    doc["claims"].append({"id": "mean-S", "table": "Results", "model": None, "variant": "simulated",
                          "metric": "expr", "printed": mean_s, "where": "sec:results",
                          "expr": " + ".join(f'S(model="{m}", variant="simulated")' for m, _, _ in rows) + " / 1",
                          "tolerance": 0.01, "reason": "the text prints the mean of the rounded table values"})
    doc["claims"][-1]["expr"] = "(" + doc["claims"][-1]["expr"].removesuffix(" / 1") + ") / 2"
    # step 4: what no run holds is UNVERIFIABLE, with the reason
    doc["claims"].append({"id": "raters", "table": "Results", "model": None, "variant": "human", "metric": "count",
                          "printed": "87", "where": "sec:results", "unverifiable": "human ratings are not published"})
    # step 5: the design's numbers are excluded, with the reason
    doc["excluded"] = [{"where": "sec:results", "printed": p, "reason": "the design: 2 models, 20 personas, 3 "
                        "repetitions"} for p in ("2", "20", "3")]
    claims.write_text(json.dumps(doc))
    done = run_cli("claims", "coverage", "--source", str(tex), "--claims", str(claims))
    assert done.returncode == 0, done.stdout
    assert done.stdout.strip() == ("coverage: 9 numbers printed, 5 checked, 1 unverifiable (1: human ratings are not "
                                   "published), 3 excluded, 0 unaccounted")
    # step 6: check the claims against the data
    checked = run_cli("check", "--claims", str(claims), "--store", str(store))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "PASS 5" in checked.stderr and "UNVERIFIABLE 1" in checked.stderr
    # a misprinted cell is a FAIL
    doc["claims"][0]["printed"] = f"{float(rows[0][1]) + 0.05:.2f}"
    claims.write_text(json.dumps(doc))
    assert run_cli("check", "--claims", str(claims), "--store", str(store)).returncode == 1
    shutil.rmtree(store)
