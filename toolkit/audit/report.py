"""Audit reports: a claims table in the terminal, Markdown or JSON, and a self-contained
report folder (index.html + report.md + figures + CSV/JSON/LaTeX tables)."""

from __future__ import annotations

import html
import json
from pathlib import Path

import polars as pl

from ..analysis.api import strip_variant_suffix
from ..report.paper_tables import foundation_table, paired_table, profile_table, variant_table
from ..report.tables import format_frame
from .run import AuditResult

STATUS_COLOR = {"PASS": "#2e7d32", "WITHIN-SE": "#ef6c00", "FAIL": "#c62828"}


def claims_output(result: AuditResult, fmt: str, all_claims: bool = False) -> str:
    """The claims as the terminal (or Markdown) shows them: the counts and every claim that is
    not a plain PASS, or with ``all_claims`` every claim; JSON always holds them all."""
    table = result.table
    if fmt == "json":
        doc = {"dataset": result.dataset.name, "paper": result.dataset.paper, "counts": result.counts,
               "passed": result.passed,
               "claims": [dict(row) for row in table.iter_rows(named=True)]}
        return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
    shown = table.select("id", "table", "printed", "recomputed", "diff_units", "diff_se", "status")
    counts = ", ".join(f"{k} {v}" for k, v in result.counts.items())
    head = f"audit {result.dataset.name} ({result.dataset.paper}): {counts}\n"
    if not all_claims:
        shown = shown.filter(pl.col("status") != "PASS")
        head += ("(the claims that are not PASS are listed above; --all lists every claim)\n" if len(shown) else
                 "(every claim PASS; --all lists them)\n")
        if not len(shown):
            return f"**{head.strip()}**\n" if fmt == "markdown" else head
    if fmt == "markdown":
        return f"**{head.strip()}**\n\n" + format_frame(shown, "markdown")
    return format_frame(shown, "table") + head


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


def write_report(result: AuditResult, folder: str | Path, figure_format: str = "png") -> Path:
    folder = Path(folder)
    (folder / "figures").mkdir(parents=True, exist_ok=True)
    figures: list[tuple[str, str]] = []
    try:
        from ..report.figures import plot_bars, plot_radar

        display = result.claims.display_names
        if len(result.comparison):
            plot_bars(result.comparison, "S", folder / "figures" / f"bars_S.{figure_format}", display=display)
            plot_bars(result.comparison, "R", folder / "figures" / f"bars_R.{figure_format}", display=display)
            figures += [(f"figures/bars_{m}.{figure_format}", f"Moral {name} {m} per model and variant; Δ% from base")
                        for m, name in (("S", "susceptibility"), ("R", "robustness"))]
        if len(result.profiles):
            plot_radar(result.profiles, folder / "figures" / f"radar_profiles.{figure_format}",
                       family=strip_variant_suffix,
                       display=display)
            figures.append((f"figures/radar_profiles.{figure_format}",
                            "Moral foundations profiles without persona (mean ± std)"))
    except Exception as exc:
        figures.append(("", f"figures not drawn: {exc}"))
    tables = paper_tables(result)
    (folder / "claims.json").write_text(claims_output(result, "json"), encoding="utf-8")
    result.metrics.write_csv(folder / "metrics.csv")
    if len(result.comparison):
        result.comparison.write_csv(folder / "comparison.csv")
    if len(result.profiles):
        result.profiles.write_csv(folder / "profiles.csv")
    (folder / "tables.tex").write_text("\n".join(format_frame(t, "latex", caption=name) for name, t in tables.items()),
                                       encoding="utf-8")
    md = [f"# Audit of {result.dataset.name} ({result.dataset.paper})", "",
          f"Source: {result.dataset.repository} at commit `{result.dataset.commit}`; "
          f"{len(result.files)} files, every SHA-256 checked; store verified.", "",
          "Counts: " + ", ".join(f"{k} {v}" for k, v in result.counts.items()), "", "## Figures", ""]
    md += [f"![{cap}]({src})" if src else f"_{cap}_" for src, cap in figures]
    for name, t in tables.items():
        md += ["", f"## {name}", "", format_frame(t, "markdown")]
    md += ["", "## Claims", "", claims_output(result, "markdown", all_claims=True)]
    (folder / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    (folder / "index.html").write_text(_html(result, figures, tables), encoding="utf-8")
    return folder


def _html_table(df: pl.DataFrame, status: bool = False) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in df.columns)
    body = []
    for row in df.iter_rows(named=True):
        cells = []
        for k, v in row.items():
            text = f"{v:.6g}" if isinstance(v, float) else ("" if v is None else str(v))
            style = f' style="color:{STATUS_COLOR[text]};font-weight:bold"' if status and k == "status" else ""
            cells.append(f"<td{style}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure_html(src: str, cap: str) -> str:
    """An image for PNG and SVG; a PDF (which browsers do not show inline) as a link."""
    if not src:
        return f"<p><em>{html.escape(cap)}</em></p>"
    if src.endswith(".pdf"):
        return f'<p><a href="{html.escape(src)}">{html.escape(cap)} (PDF)</a></p>'
    return (f'<figure><img src="{html.escape(src)}" alt="{html.escape(cap)}"><figcaption>{html.escape(cap)}'
            "</figcaption></figure>")


def _html(result: AuditResult, figures, tables) -> str:
    counts = " · ".join(f'<span style="color:{STATUS_COLOR[k]}">{k} {v}</span>' for k, v in result.counts.items())
    figs = "".join(_figure_html(src, cap) for src, cap in figures)
    tabs = "".join(f"<h2>{html.escape(name)}</h2>{_html_table(t)}" for name, t in tables.items())
    shown = result.table.select("id", "table", "printed", "recomputed", "diff_units", "diff_se", "status")
    d = result.dataset
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Audit {html.escape(d.name)}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;font-size:13px;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 6px}}
th{{background:#f3f3f3}}img{{max-width:100%}}figure{{margin:1em 0}}</style></head><body>
<h1>Audit of {html.escape(d.name)} ({html.escape(d.paper)})</h1>
<p>{html.escape(d.title)}. Source: <code>{html.escape(d.repository)}</code>
at commit <code>{html.escape(d.commit)}</code>;
{len(result.files)} files, every SHA-256 checked; store verified.</p>
<p><strong>{counts}</strong> (claims file: <code>{html.escape(result.claims.source)}</code>)</p>
<h2>Figures</h2>{figs}{tabs}
<h2>Claims</h2>{_html_table(shown, status=True)}
</body></html>
"""
