"""Commands a reviewer runs: audit, check, claims draft, report, paper-table."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from .options import (
    DPI_OPTION,
    analysis_options,
    emit,
    finish,
    format_option,
    guard,
    key_values,
    open_store,
    selection_options,
    store_option,
)

if TYPE_CHECKING:
    from ..analysis.options import AnalysisOptions
    from ..audit.run import AuditResult
    from ..store import Selection

WITHIN_SE = click.option("--within-se", type=float, default=None,
                         help="Grant WITHIN-SE to claims inside K standard errors.")
FIGURE_FORMAT = click.option("--figure-format", type=click.Choice(["png", "pdf", "svg"]), default="png",
                             show_default=True,
                             help="Format of the figures (PDF figures are linked, not shown inline).")
AUDIT_STORE_HELP = ("With NAME: the store to import the dataset into (default: a fresh temporary one). Without NAME: "
                    "the store folder or bundle file whose runs --claims are checked against.")


def _audit_exit(result: AuditResult) -> None:
    """What an audit could not use, on stderr; exit 0 when no claim failed and every run was read."""
    for n in result.notes:
        click.echo(f"note: {n}", err=True)
    for p in result.skipped:
        click.echo(f"skipped: {p}", err=True)
    sys.exit(0 if result.passed and not result.skipped else 1)


@click.command()
@click.argument("name", required=False)
@click.option("--from", "source", type=click.Path(), default=None, help="Local folder with the dataset's files.")
@click.option("--claims", default=None, help="Claims file (default: the one shipped for the dataset; required "
              "without NAME).")
@click.option("--with", "others", multiple=True, metavar="NAME=DIR",
              help="A folder with another catalogued dataset's files, for the claims that quote it (repeatable).")
@click.option("--report-dir", type=click.Path(file_okay=False), default=None,
              help="Write the report site (index.html, audit.html, report.md, figures, tables) here.")
@click.option("--all", "all_claims", is_flag=True, help="table/markdown: every claim (default: the counts and "
              "the claims that are not PASS).")
@click.option("--summary", is_flag=True, help="Only one line per claim that is not PASS (as `toolkit check`).")
@FIGURE_FORMAT
@DPI_OPTION
@WITHIN_SE
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]), default="table", show_default=True)
@click.option("--store", "store_dir", type=click.Path(), default=None, help=AUDIT_STORE_HELP)
@click.option("--paper", "paper_source", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The paper's LaTeX source: the report then counts which of its printed numbers the claims "
                   "check (default: paper/main.tex in the --from folder, when there is one).")
@guard
@analysis_options(scheduler=False)
def audit(name: str | None, source: str | None, claims: str | None, others: tuple[str, ...], report_dir: str | None,
          all_claims: bool, summary: bool, figure_format: str, dpi: float | None, within_se: float | None, fmt: str,
          options: AnalysisOptions, store_dir: str | None, paper_source: str | None) -> None:
    """Verify a paper's claims against raw data: PASS / WITHIN-SE / FAIL / UNVERIFIABLE per number,
    and for a FAIL, the run or file version that reproduces the printed value when there is one.

    NAME audits a catalogued dataset; without it, --claims FILE is checked against --store DIR or
    a bundle. Exit 0 when no claim fails, 1 when any does, 2 on bad input.
    """
    from ..audit.report import check_lines, claims_output, write_report
    from ..audit.run import audit_session

    folders = key_values(others, "--with", "NAME=DIR (a catalogued dataset and a folder with its files)")
    with audit_session(name, store=store_dir, claims=claims, source=source, options=options, within_se=within_se,
                       others=folders, progress=fmt == "table" and not summary, paper_source=paper_source) as result:
        click.echo(check_lines(result) if summary else claims_output(result, fmt, all_claims), nl=False)
        if report_dir:
            folder = write_report(result, report_dir, figure_format, options, dpi)
            click.echo(f"report: {folder / 'index.html'} (claims: {folder / 'audit.html'})", err=True)
    _audit_exit(result)


@click.command()
@click.option("--claims", required=True, help="The claims file: what the numbers must be.")
@WITHIN_SE
@store_option
@guard
@analysis_options(scheduler=False)
def check(claims: str, within_se: float | None, options: AnalysisOptions, store_dir: str | None) -> None:
    """For CI: check a claims file against the store (or a bundle). One line per claim that is
    not PASS; exit 0 when none fails, 1 when any does."""
    from ..audit.report import check_lines
    from ..audit.run import audit_session

    with audit_session(None, store=store_dir, claims=claims, options=options, within_se=within_se) as result:
        click.echo(check_lines(result), nl=False)
    counts = ", ".join(f"{k} {v}" for k, v in result.counts.items())
    click.echo(f"check: {len(result.table)} claims: {counts}", err=True)
    _audit_exit(result)


@click.group()
def claims() -> None:
    """Claims files (toolkit-claims/2): the numbers a paper prints, checked by `audit` and `check`."""


@claims.command("draft")
@selection_options()
@click.option("--metrics", "metric_names", default="S,R,sigma_bar", show_default=True,
              help="Which metrics to claim (any of S, S_se, R, R_se, sigma_bar, sigma_bar_se, delta_S_pct, "
                   "delta_R_pct, delta_sigma_bar_pct).")
@click.option("--decimals", type=click.IntRange(0, 12), default=2, show_default=True,
              help="Decimals printed: the tolerance is half a unit of the last one.")
@click.option("--by", type=click.Choice(["run", "group"]), default="run", show_default=True,
              help="'group' also claims each item group (moral foundation).")
@click.option("--baseline", default="base", show_default=True, help="Variant the delta_* metrics compare with.")
@click.option("--paper", default="", help="What the claims are from (a title or an arXiv id).")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), required=True, help="The claims file to write.")
@store_option
@guard
@analysis_options(scheduler=False)
def claims_draft(selection: Selection, metric_names: str, decimals: int, by: str, baseline: str, paper: str,
                 out_file: str, options: AnalysisOptions, store_dir: str | None) -> None:
    """Write a claims file from the current analysis: the numbers as a paper would print them."""
    from ..audit.draft import write_draft

    _, count = write_draft(open_store(store_dir), out_file, selection=selection, decimals=decimals, paper=paper,
                           metrics=[m.strip() for m in metric_names.split(",") if m.strip()], baseline=baseline,
                           by_group=by == "group", options=options)
    click.echo(f"claims: {out_file} ({count} claims)")


@claims.command("coverage")
@click.option("--source", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The paper's LaTeX source (main.tex).")
@click.option("--claims", "claims_file", required=True, help="The claims file (a path, or a shipped file's name).")
@click.option("--all", "all_numbers", is_flag=True, help="List every printed number with its state, not only the "
              "unaccounted ones.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@guard
def claims_coverage(source: str, claims_file: str, all_numbers: bool, fmt: str) -> None:
    """Which numbers the paper prints the claims file accounts for: claimed (by id),
    unverifiable (with the reason), excluded (with the reason) or unaccounted. Exit 1 when any
    printed number is unaccounted (docs/claims.md)."""
    import json

    from ..audit.claims import load_claims
    from ..audit.coverage import coverage, unaccounted_lines

    cov = coverage(source, load_claims(claims_file))
    if fmt == "json":
        doc = {"source": cov.source, "counts": cov.counts, "summary": cov.summary(),
               "numbers": [{"line": a.number.line, "where": a.number.where, "kind": a.number.kind,
                            "row": a.number.row, "column": a.number.column, "value": a.number.value,
                            "unit": a.number.unit, "state": a.state, "by": a.by} for a in cov.numbers]}
        click.echo(json.dumps(doc, indent=1, ensure_ascii=False))
    else:
        if all_numbers:
            for a in cov.numbers:
                n = a.number
                click.echo(f"{n.line}\t{n.where}\t{n.value}{n.unit}\t{a.state}\t{a.by}")
        else:
            click.echo(unaccounted_lines(cov), nl=False)
        click.echo(f"coverage: {cov.summary()}")
    if cov.unaccounted:
        raise SystemExit(1)


@click.command()
@selection_options(mode=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Folder of the site (created; an earlier report there is replaced).")
@click.option("--personas", "personas_file", default=None,
              help="Persona file (JSON list) whose texts the drill-down shows; recorded runs name their own set.")
@click.option("--baseline", default="base", show_default=True, help="Variant the comparison is made against.")
@FIGURE_FORMAT
@DPI_OPTION
@store_option
@guard
@analysis_options(scheduler=False)
def report(selection: Selection, out_dir: str, personas_file: str | None, baseline: str, figure_format: str,
           dpi: float | None, options: AnalysisOptions, store_dir: str | None) -> None:
    """A static site for the store or a selection: metrics, comparisons, profiles, curves,
    retention, runs with provenance and a per-persona drill-down. Opens from a file URL, offline."""
    from ..report.site import report as write_report

    folder, data = write_report(open_store(store_dir), out_dir, selection, options=options, baseline=baseline,
                                personas_file=personas_file, figure_format=figure_format, dpi=dpi)
    click.echo(f"report: {folder / 'index.html'} ({len(data.runs)} runs)")
    finish(skipped=data.skipped)


@click.command("paper-table")
@click.argument("number", type=click.IntRange(1, 5))
@selection_options()
@click.option("--claims", default=None, help="Claims file with display names (default: the paper's).")
@click.option("--paired", is_flag=True,
              help="Tables 1-2: the paired change from base with its interval and p-value instead of value ± SE.")
@store_option
@format_option
@guard
@analysis_options(scheduler=False, tests=True)
def paper_table(number: int, selection: Selection, claims: str | None, paired: bool, options: AnalysisOptions,
                store_dir: str | None, fmt: str) -> None:
    """The tables of arXiv 2605.12850: 1 S, 2 R (with Δ%), 3 self profiles, 4 R and 5 S per foundation."""
    from ..audit.paper import PAPER_CLAIMS
    from ..audit.paper import paper_table as make_table

    frame, caption = make_table(open_store(store_dir), number, selection, options=options, paired=paired,
                                claims=claims or PAPER_CLAIMS)
    emit(frame, fmt, caption=caption)


COMMANDS = [audit, check, claims, report, paper_table]
