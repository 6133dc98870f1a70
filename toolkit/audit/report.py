"""Audit reports: a claims table in the terminal, Markdown or JSON, and a report site (the
`toolkit report` site of the audited store, with the claims as its audit.html page, plus
report.md, claims.json and the paper's tables in LaTeX)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from ..analysis.api import strip_variant_suffix
from ..analysis.options import DEFAULT, AnalysisOptions
from ..report import html as H
from ..report.paper_tables import foundation_table, paired_table, profile_table, variant_table
from ..report.tables import format_frame
from .run import AuditResult


def claims_output(result: AuditResult, fmt: str, all_claims: bool = False) -> str:
    """The claims as the terminal (or Markdown) shows them: the counts and every claim that is
    not a plain PASS, or with ``all_claims`` every claim; JSON always holds them all."""
    table = result.table
    if fmt == "json":
        doc: dict[str, Any] = {"dataset": result.dataset.name, "paper": result.dataset.paper, "counts": result.counts,
                               "passed": result.passed,
                               "claims": [dict(row) for row in table.iter_rows(named=True)]}
        if result.coverage is not None:
            cov = result.coverage
            doc["coverage"] = {"source": cov.source, "counts": cov.counts, "unverifiable_reasons": cov.reasons(),
                               "summary": cov.summary(),
                               "unaccounted": [{"line": a.number.line, "where": a.number.where, "value": a.number.value}
                                               for a in cov.unaccounted]}
        return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
    shown = table.select("id", "table", "printed", "recomputed", "diff_units", "diff_se", "status", "note")
    counts = ", ".join(f"{k} {v}" for k, v in result.counts.items())
    paper = f" ({result.dataset.paper})" if result.dataset.paper else ""
    head = f"audit {result.dataset.name}{paper}: {counts}\n" + coverage_line(result)
    if not all_claims:
        # UNVERIFIABLE claims share a few reasons: one line per reason, not one per claim
        reasons = table.filter(pl.col("status") == "UNVERIFIABLE").group_by("note", maintain_order=True).len()
        head = "".join(f"  UNVERIFIABLE {n}: {why}\n" for why, n in reasons.iter_rows()) + head
        shown = shown.filter(~pl.col("status").is_in(["PASS", "UNVERIFIABLE"]))
        head += ("(the claims that are not PASS are listed above; --all lists every claim)\n" if len(shown) else
                 "(every claim PASS; --all lists them)\n")
        if not len(shown):
            return f"**{head.strip()}**\n" if fmt == "markdown" else head
    if fmt == "markdown":
        return f"**{head.strip()}**\n\n" + format_frame(shown, "markdown")
    notes = "".join(f"  {cid}: {note}\n" for cid, note in shown.select("id", "note").iter_rows() if note)
    return format_frame(shown.drop("note"), "table") + notes + head


def coverage_line(result: AuditResult) -> str:
    """The paper's printed numbers against the claims, when the audit had its LaTeX."""
    if result.coverage is None:
        return ""
    return f"coverage of {result.coverage.source}: {result.coverage.summary()}\n"


def check_lines(result: AuditResult) -> str:
    """One line per claim that is not PASS (what `toolkit check` prints for CI), else nothing."""
    out = []
    for r in result.table.filter(pl.col("status") != "PASS").iter_rows(named=True):
        got = "no value" if r["recomputed"] is None else f"recomputed {r['recomputed']:.6g}"
        note = f" ({r['note']})" if r["note"] else ""
        out.append(f"{r['status']} {r['id']}: printed {r['printed']}, {got}{note}\n")
    return "".join(out)


def paper_tables(result: AuditResult) -> dict[str, pl.DataFrame]:
    display = result.claims.display_names
    out: dict[str, pl.DataFrame] = {}
    if len(result.comparison):
        out["Table 1: moral susceptibility S"] = variant_table(result.comparison, "S", display=display)
        out["Table 2: moral robustness R"] = variant_table(result.comparison, "R", display=display)
    if len(result.profiles):
        out["Table 3: moral foundations profiles (self)"] = profile_table(result.profiles, family=strip_variant_suffix,
                                                                          display=display)
    if len(result.paired):
        out["Paired changes from base (bootstrap interval; permutation p, Holm across foundations)"] = paired_table(
            result.paired, display=display)
    out["Table 4: R per foundation"] = foundation_table(result.metrics, "R", family=strip_variant_suffix, decimals=1,
                                                        display=display)
    out["Table 5: S per foundation"] = foundation_table(result.metrics, "S", family=strip_variant_suffix,
                                                        display=display)
    return out


def write_report(result: AuditResult, folder: str | Path, figure_format: str = "png",
                 options: AnalysisOptions = DEFAULT, dpi: float | None = None) -> Path:
    """The audit as a report site (``toolkit report`` of the audited store) whose claims page
    is ``audit.html``, with the claims (JSON), the paper's tables (LaTeX, Markdown) and the
    analysed frames (CSV) beside it."""
    from ..report.figures import figure_options
    from ..report.site import Page, gather, write_site

    display = result.claims.display_names
    data = gather(result.store, options=options, baseline=result.claims.baseline,
                  title=_title(result), metrics=result.metrics,
                  comparison=result.comparison, self_profiles=result.profiles, display=display)
    data.skipped = sorted(set(data.skipped) | set(result.skipped))
    tables = paper_tables(result)
    figures = [(f"figures/{name}.{figure_format}", caption) for name, caption in FIGURES]
    counts = " · ".join(f'<span style="color:{H.STATUS_COLOR[k]}">{k} {v}</span>' for k, v in result.counts.items())
    page = Page("audit.html", "Audit", _title(result),
                _audit_body(result, tables, counts), summary=f"<strong>{counts}</strong>")

    def extra_files(tmp: Path) -> None:
        drawn = [(src, cap) for src, cap in figures if (tmp / src).is_file()]
        (tmp / "claims.json").write_text(claims_output(result, "json"), encoding="utf-8")
        if len(result.comparison):
            result.comparison.write_csv(tmp / "comparison.csv")
        if len(result.profiles):
            result.profiles.write_csv(tmp / "profiles.csv")
        (tmp / "tables.tex").write_text("\n".join(format_frame(t, "latex", caption=name) for name, t in tables.items()),
                                        encoding="utf-8")
        md = [f"# {_title(result)}", "", _source_line(result), "",
              "Counts: " + ", ".join(f"{k} {v}" for k, v in result.counts.items()), "", "## Figures", ""]
        md += [f"![{cap}]({src})" for src, cap in drawn]
        for name, t in tables.items():
            md += ["", f"## {name}", "", format_frame(t, "markdown")]
        md += ["", "## Claims", "", claims_output(result, "markdown", all_claims=True)]
        (tmp / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")

    with figure_options(dpi):
        return write_site(data, folder, figure_format=figure_format, pages=(page,), files=extra_files)


def _title(result: AuditResult) -> str:
    paper = f" ({result.dataset.paper})" if result.dataset.paper else ""
    return f"Audit of {result.dataset.name}{paper}"


def _source_line(result: AuditResult) -> str:
    d = result.dataset
    if result.files:
        return (f"Source: {d.repository} at commit {d.commit}; {len(result.files)} files, every SHA-256 checked; "
                "store verified.")
    return f"Source: the store {d.repository} (every segment's SHA-256 checked as it was read)."


FIGURES = (("bars_S", "Moral susceptibility S per model and variant; Δ% from base"),
           ("bars_R", "Moral robustness R per model and variant; Δ% from base"),
           ("radar_profiles", "Moral foundations profiles without persona (mean ± std)"))


def _audit_body(result: AuditResult, tables: dict[str, pl.DataFrame], counts: str) -> str:
    """The claims page: where the data came from, the counts, the paper's tables recomputed
    and every claim with its status (the figures are on the overview)."""
    tabs = "".join(f"<h2>{H.esc(name)}</h2>{H.table(t)}" for name, t in tables.items())
    shown = result.table.select("id", "table", "printed", "recomputed", "diff_units", "diff_se", "status", "note")
    d = result.dataset
    return (f"<p>{H.esc(d.title)}. {H.esc(_source_line(result))}</p>"
            + (f"<p>Coverage: {H.esc(coverage_line(result).strip())}</p>" if result.coverage is not None else "")
            + f"<p><strong>{counts}</strong> (claims file: <code>{H.esc(result.claims.source)}</code>; "
            'files: <a href="claims.json">claims.json</a>, <a href="tables.tex">tables.tex</a>, '
            f'<a href="report.md">report.md</a>; figures on the <a href="index.html">overview</a>)</p>{tabs}'
            f"<h2>Claims</h2>{H.table(shown, table_id='claims', status='status')}")
