"""`toolkit report`: a static site for a store or a selection of its runs.

``gather`` computes what the site shows (the same analyses the commands print); ``write_site``
lays it out as pages a person reads and sends on:

- ``index.html``: the metrics with their SEs, comparisons with the baseline (bars with Δ%),
  radar profiles per group, temperature curves of logprob runs, retention and unparseable
  answers per run, anything skipped and why;
- ``runs.html``: every run with its provenance (origin, endpoint, sources and their hashes);
- ``runs/<run>.html`` and ``runs/<run>/p<persona>.html``: the drill-down, a run's personas,
  then one persona's text, its ratings per item and the responses stored for them;
- extra pages a caller adds (the audit's claims page).

The folder is written beside its destination and renamed into place, so a reader never sees
half a report, and an existing folder is replaced only when it is a report itself.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from .. import __version__
from ..analysis.api import analyze, compare, curves, strip_variant_suffix
from ..analysis.foundations import persona_set_profiles, profiles
from ..analysis.options import DEFAULT, AnalysisOptions
from ..analysis.result import Result
from ..analysis.selection import MIN_PERSONAS_FOR_INTERSECTION, retained_counts
from ..errors import ToolkitError
from ..protocol.instrument import Instrument
from ..protocol.personas import PersonaSet, load_personas, named_set, shipped_named
from ..store import MODES, RunManifest, Store
from ..store.output import check_output_folder, marker_text
from ..store.query import EVERY_RUN, Selection
from . import html as H
from .completions import digit_probabilities
from .parts import Parts, matplotlib_version
from .tables import comparison_view, metrics_view

MARKER = ".toolkit-report"  # a folder holding it may be replaced by a new report
CURVE_POINTS = 46


@dataclass
class Page:
    """A page a caller adds to the site (the audit adds its claims); ``summary`` goes on the
    overview, linked to the page."""
    file: str
    label: str
    title: str
    body: str
    summary: str = ""


@dataclass
class SiteData:
    store: Store
    title: str
    selection: dict[str, Any]
    runs: list[RunManifest]
    metrics: pl.DataFrame
    comparison: pl.DataFrame
    self_profiles: pl.DataFrame
    set_profiles: pl.DataFrame
    curves: pl.DataFrame
    retention: pl.DataFrame
    baseline: str = "base"
    options: AnalysisOptions = DEFAULT
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    display: dict[str, Any] = field(default_factory=dict[str, Any])
    parts: Parts | None = None  # gather's results-cache view, whose segment checks write_site reuses


def gather(store: Store, selection: Selection = EVERY_RUN, *, options: AnalysisOptions = DEFAULT,
           baseline: str = "base", title: str | None = None,
           metrics: pl.DataFrame | None = None, comparison: pl.DataFrame | None = None,
           self_profiles: pl.DataFrame | None = None, display: dict[str, Any] | None = None) -> SiteData:
    """Every analysis the site shows, for the selected runs. A run an analysis cannot use is
    named in ``skipped`` (the site says so) rather than stopping the report. Frames a caller
    has already computed (the audit) are passed in and not computed again."""
    runs = selection.resolve(store)

    def of(*modes: str) -> Selection | None:
        """The selected runs of these modes, or None when there are none."""
        ids = [m.run_id for m in runs if m.mode in modes]
        return Selection(run_id=ids) if ids else None

    rated, selves_sel, persona_sel, logprob_sel = of("persona", "logprob"), of("self"), of("persona"), of("logprob")

    skipped: list[str] = []
    notes: list[str] = []
    if metrics is None:
        metrics = pl.DataFrame()
        if rated is not None:
            analysis = analyze(store, rated, by_group=True, options=options, on_error="skip")
            metrics, skipped, notes = analysis.frame, [*analysis.skipped], [*analysis.notes]
    if comparison is None:
        variants = set(metrics["variant"]) if len(metrics) else set()
        comparison = pl.DataFrame()
        if baseline in variants and len(variants) > 1:
            compared = compare(metrics, baseline=baseline, on_error="skip")
            comparison, notes = compared.frame, notes + list(compared.skipped)
    # what the analyses below read: every run of the store (so the key of each holds them all)
    parts, every = Parts(store, options.cache), store.runs()
    if self_profiles is None:
        self_profiles = pl.DataFrame()
        if selves_sel is not None:
            selves = parts.result(["profiles", selves_sel.run_id], every,
                                  partial(profiles, store, selves_sel, on_error="skip"))
            self_profiles, skipped = selves.frame, skipped + list(selves.skipped)
    sets = (parts.result(["set-profiles", persona_sel.run_id], every,
                         partial(persona_set_profiles, store, persona_sel, on_error="skip")).frame
            if persona_sel is not None else pl.DataFrame())
    curve = (curves(store, logprob_sel, points=CURVE_POINTS, options=options, on_error="skip").frame
             if logprob_sel is not None else pl.DataFrame())
    retention = parts.result(["retention", [m.run_id for m in runs], options.numbers()], every,
                             lambda: Result(retention_table(store, runs, options))).frame
    desc = selection.describe() or "every run"
    return SiteData(store=store, title=title or f"Report: {store.root.name}", selection={"runs": desc}, runs=runs,
                    metrics=metrics, comparison=comparison, self_profiles=self_profiles, set_profiles=sets,
                    curves=curve, retention=retention, baseline=baseline,
                    options=options, skipped=sorted(set(skipped)), notes=notes, display=display or {}, parts=parts)


def report(store: Store, out: str | Path, selection: Selection = EVERY_RUN, *, options: AnalysisOptions = DEFAULT,
           baseline: str = "base", personas_file: str | Path | None = None, figure_format: str = "png",
           dpi: float | None = None) -> tuple[Path, SiteData]:
    """`toolkit report`: gather every analysis of the selected runs and write the site to
    ``out``; the folder written and what it shows (``skipped`` names the runs left out)."""
    from .figures import check_dpi, figure_options

    check_dpi(dpi)
    personas = load_personas(personas_file) if personas_file else None
    data = gather(store, selection, options=options, baseline=baseline)
    with figure_options(dpi):
        return write_site(data, out, personas=personas, figure_format=figure_format), data


def retention_table(store: Store, runs: list[RunManifest], options: AnalysisOptions = DEFAULT) -> pl.DataFrame:
    """Per sampled run (persona or self): completions, how many gave no rating in the scale,
    failed attempts, and for persona runs how many personas answered every item and how many
    the retention rule keeps (the same rule `analyze` applies)."""
    sampled = [m for m in runs if m.mode in ("persona", "self")]
    kept: dict[str, tuple[int, int, int]] = {}
    persona_runs = [m for m in sampled if m.mode == "persona"]
    if persona_runs:
        for rc, ids in retained_counts(store, persona_runs, store.runs(), options, problems=[]):
            kept[rc.manifest.run_id] = (rc.persona_ids.size, int(rc.valid_personas.sum()), int(ids.size))
    rows = []
    for m in sampled:
        try:
            df = pl.from_arrow(store.read_run(m, ["rating", "failures", "persona_id"], generations="newest"))
        except ToolkitError:  # named by the analyses and by the run's own page
            continue
        assert isinstance(df, pl.DataFrame)
        seen, complete, retained = kept.get(m.run_id, (df["persona_id"].n_unique(), None, None))
        rows.append({"run_id": m.run_id, "mode": m.mode, "completions": df.height,
                     "unparseable": int((df["rating"] < 0).sum()), "failed_attempts": int(df["failures"].sum() or 0),
                     "personas": None if m.mode == "self" else seen, "complete_personas": complete,
                     "retained": retained})
    return pl.DataFrame(rows, schema={"run_id": pl.String, "mode": pl.String, "completions": pl.Int64,
                                      "unparseable": pl.Int64, "failed_attempts": pl.Int64, "personas": pl.Int64,
                                      "complete_personas": pl.Int64, "retained": pl.Int64})


# --- writing -----------------------------------------------------------------------------------

def run_slug(run_id: str) -> str:
    """A run's page name: from its id, so links stay the same from one report to the next."""
    return "r" + hashlib.sha256(run_id.encode()).hexdigest()[:12]


def write_site(data: SiteData, out: str | Path, *, personas: PersonaSet | None = None,
               figure_format: str = "png", pages: tuple[Page, ...] = (),
               files: Callable[[Path], None] | None = None) -> Path:
    """Write the site to ``out`` (replacing an earlier report there). ``personas`` is a persona
    file the user gave (a bundle's own persona files are read too); ``files`` writes a caller's
    own files into the new folder before it is moved into place."""
    out = check_output_folder(out, MARKER, legacy=_written_by_an_older_report)
    carried = [load_personas(str(p)) for p in data.store.carried_personas.values()]
    _remove_leftovers(out)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "figures").mkdir(parents=True)
    try:
        nav = [("index.html", "Overview"), ("runs.html", "Runs")] + [(p.file, p.label) for p in pages]
        parts = data.parts or Parts(data.store, data.options.cache)
        for m in data.runs:  # first: a run that cannot be read is named on the overview
            try:
                texts = _persona_texts(m, personas, carried)
                mine, ret = _run_tables(data, m)
                what = ["run-pages", nav, texts, mine, ret]  # the Memo key holds the run's manifest
                made = partial(_run_pages, data, m, nav, texts, mine, ret)
                for name, body in parts.get(what, [m], made).items():
                    _write_bytes(tmp / name, body)
            except ToolkitError as exc:
                data.skipped.append(f"run {m.run_id}: cannot be read: {exc}")
                _write(tmp / "runs" / f"{run_slug(m.run_id)}.html",
                       H.page(f"Run {m.run_id}", f'<p class="warn">This run cannot be read: {H.esc(exc)}</p>', nav,
                              "", "../"))
        data.skipped = sorted(set(data.skipped))
        figures = _figures(data, tmp / "figures", figure_format, parts)
        _write(tmp / H.STYLESHEET, H.STYLE + "\n")
        _write(tmp / "index.html", H.page(data.title, _overview(data, figures, pages), nav, "index.html"))
        _write(tmp / "runs.html", H.page("Runs and their provenance", _runs_page(data), nav, "runs.html"))
        for p in pages:
            _write(tmp / p.file, H.page(p.title, p.body, nav, p.file))
        if len(data.metrics):
            data.metrics.write_csv(tmp / "metrics.csv")
        if files is not None:
            files(tmp)
        written = [p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file()]
        (tmp / MARKER).write_text(marker_text("report", __version__, written), encoding="utf-8")
        os.sync()  # every file durable before the folder appears under its name
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _remove_leftovers(out: Path) -> None:
    """The partial and old folders an earlier report left beside ``out`` when it was killed
    (their process is gone); a report still being written by a live process is left alone."""
    for path in out.parent.glob(f".{out.name}.*-*"):
        kind, _, pid = path.name[len(out.name) + 2:].rpartition("-")
        if kind in ("partial", "old") and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


_OLD_REPORT_FILES = {"index.html", "runs.html", "metrics.csv", "claims.json", "comparison.csv", "profiles.csv",
                     "tables.tex"}


def _written_by_an_older_report(path: Path) -> bool:
    """A file of a report written before its marker listed its files (release 0.1): its pages,
    tables and figures, by name; anything else in such a folder is not replaced."""
    return (path.parts[0] in ("figures", "runs") or path.as_posix() in _OLD_REPORT_FILES
            or (len(path.parts) == 1 and path.suffix == ".html"))


def _write(path: Path, text: str) -> None:
    _write_bytes(path, text.encode("utf-8"))


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _figures(data: SiteData, folder: Path, fmt: str, parts: Parts) -> dict[str, list[tuple[str, str]]]:
    """Each section's figures as (src, caption); a figure that cannot be drawn becomes its reason.
    A figure drawn before from the same inputs comes from the results cache (parts.py)."""
    out: dict[str, list[tuple[str, str]]] = {"comparison": [], "profiles": [], "curves": []}
    try:
        from .figures import _DPI, plot_bars, plot_curves, plot_profile_comparison, plot_radar
    except ImportError as exc:  # pragma: no cover - figures.py imports matplotlib lazily
        out["comparison"].append(("", f"figures not drawn: {exc}"))
        return out

    def draw(section: str, name: str, caption: str, fn: Callable[[Path], object], *inputs: Any) -> None:
        path = folder / f"{name}.{fmt}"

        def drawn() -> dict[str, bytes]:
            fn(path)
            return {path.name: path.read_bytes()}

        what = ["figure", name, fmt, _DPI[0], matplotlib_version(), data.display, data.baseline, list(inputs)]
        try:
            for file, body in parts.get(what, data.runs, drawn).items():
                _write_bytes(folder / file, body)
            out[section].append((f"figures/{name}.{fmt}", caption))
        except ToolkitError as exc:
            out[section].append(("", f"{caption}: not drawn ({exc})"))

    cmp_all = data.comparison.filter(pl.col("group") == "all") if len(data.comparison) else data.comparison
    if len(cmp_all) and (cmp_all["variant"] != data.baseline).any():
        for metric, name in (("S", "susceptibility"), ("R", "robustness")):
            draw("comparison", f"bars_{metric}", f"Moral {name} {metric} per model and variant (± SE); Δ% from "
                 f"{data.baseline}", partial(plot_bars, data.comparison, metric, display=data.display,
                                             baseline=data.baseline), data.comparison, metric)
    if len(data.self_profiles):
        draw("profiles", "radar_profiles", "Moral foundations profiles without persona (mean ± within-question std)",
             lambda p: plot_radar(data.self_profiles, p, family=strip_variant_suffix, display=data.display),
             data.self_profiles)
    if len(data.set_profiles):
        draw("profiles", "radar_sets", "Profiles over each persona run's retained personas (mean ± across-persona "
             "std), beside the same model's self profile", lambda p: plot_profile_comparison(
                 data.self_profiles if len(data.self_profiles) else data.set_profiles.head(0), data.set_profiles, p),
             data.self_profiles, data.set_profiles)
    if len(data.curves):
        draw("curves", "curves", "R(T) and S(T) of the logprob runs (logit method, ± persona-bootstrap SE)",
             lambda p: plot_curves(data.curves, p), data.curves)
    return out


def _overview(data: SiteData, figures: dict[str, list[tuple[str, str]]], pages: tuple[Page, ...]) -> str:
    modes = {mode: sum(m.mode == mode for m in data.runs) for mode in MODES}
    o = data.options
    parts = [f"<p>Store <code>{H.esc(data.store.root)}</code>, {H.esc(data.selection['runs'])}: "
             + ", ".join(f"{n} {mode} run{'s' if n != 1 else ''}" for mode, n in modes.items() if n)
             + '. <a href="runs.html">Runs and provenance</a>.</p>',
             f'<p class="note">toolkit {H.esc(__version__)}; bootstrap {o.bootstrap} persona draws and '
             f"{o.rerun_bootstrap} rerun draws, seed {o.seed} (the same store gives the same numbers and the same "
             "pages). The full-precision metrics are in <a href=\"metrics.csv\">metrics.csv</a>.</p>"]
    parts += [f'<p><a href="{H.esc(p.file)}">{H.esc(p.label)}</a>: {p.summary}</p>' for p in pages if p.summary]
    if data.skipped or data.notes:
        items = [f"<li class=\"warn\">skipped: {H.esc(s)}</li>" for s in data.skipped]
        items += [f"<li>{H.esc(n)}</li>" for n in data.notes]
        parts.append(f"<ul>{''.join(items)}</ul>")
    parts.append("<h2>Metrics</h2>")
    if len(data.metrics):
        view = metrics_view(data.metrics).with_columns(
            pl.Series("run", [f"runs/{run_slug(r)}.html" for r in data.metrics["run_id"]]))
        parts.append('<p class="note">S: moral susceptibility (spread of persona means); R = 1/σ̄: moral '
                     "robustness (σ̄, the mean std of repeated ratings); S_corr: S without the spread finite "
                     "repetitions add. Logprob runs are scored from digit probabilities, so they have no "
                     "repetition noise: their SE is the persona bootstrap alone.</p>")
        parts.append(H.table(view, table_id="metrics", links={"model": "run"}))
    else:
        parts.append('<p class="note">No persona or logprob run in the selection: S and R need one.</p>')
    if len(data.comparison):
        parts.append(f"<h2>Comparison with {H.esc(data.baseline)}</h2>")
        parts += [H.figure(src, cap) for src, cap in figures["comparison"]]
        overall = data.comparison.filter(pl.col("group") == "all")
        parts.append(H.table(comparison_view(overall, data.baseline).drop("group"), table_id="comparison"))
    if len(data.self_profiles) or len(data.set_profiles):
        parts.append("<h2>Profiles per moral foundation</h2>")
        parts += [H.figure(src, cap) for src, cap in figures["profiles"]]
    if len(data.curves):
        parts.append("<h2>Temperature curves (logprob runs)</h2>")
        parts += [H.figure(src, cap) for src, cap in figures["curves"]]
    parts.append("<h2>Retention and unparseable answers</h2>")
    parts.append(_retention_html(data))
    return "\n".join(parts)


def _retention_html(data: SiteData) -> str:
    ret = data.retention
    parts = []
    if len(ret):
        parts.append(
            '<p class="note">An answer is unparseable when no rating in the scale could be read from it (after '
            "the recorder's retries, counted as failed attempts). Retention keeps a persona only when every item "
            "has a valid rating; when a model has runs at several temperatures, only personas valid in all of "
            f"them (among runs with at least {MIN_PERSONAS_FOR_INTERSECTION} valid personas). "
            "<code>--retention run</code> keeps each run's own complete personas instead.</p>")
        shown = ret.with_columns(pl.Series("link", [f"runs/{run_slug(r)}.html" for r in ret["run_id"]]))
        persona = shown.filter(pl.col("mode") == "persona").drop("mode")
        if len(persona):
            parts.append(H.table(persona, table_id="retention", links={"run_id": "link"}))
        selves = _applicable(shown.filter(pl.col("mode") == "self").drop("mode"))
        if len(selves):
            parts.append("<p class=\"note\">Self runs (no persona): retention does not apply.</p>"
                         + H.table(selves, links={"run_id": "link"}))
    logprob = [m for m in data.runs if m.mode == "logprob"]
    if logprob:
        parts.append('<p class="note">Logprob runs have no sampled ratings to parse: each cell is scored from the '
                     "next-token probabilities of the scale's digits.</p>")
        rows = [{"run_id": m.run_id, "cells": m.rows, "link": f"runs/{run_slug(m.run_id)}.html"} for m in logprob]
        parts.append(H.table(pl.DataFrame(rows), links={"run_id": "link"}))
    return "\n".join(parts)


def _applicable(df: pl.DataFrame) -> pl.DataFrame:
    """Without the columns that hold nothing for these rows (the persona counts of self runs):
    a table shows what does not apply by leaving it out, not by blank cells."""
    return df.drop([c for c in df.columns if df[c].null_count() == len(df)])


def _provenance(m: RunManifest) -> dict[str, str]:
    proto = m.protocol if isinstance(m.protocol, dict) else {}
    sources = "; ".join(f"{s.get('file')} (sha256 {str(s.get('sha256', ''))[:12]}…, {s.get('bytes')} bytes)"
                        for s in (m.sources or []))
    personas = proto.get("personas")
    return {"origin": str(proto.get("origin", "")), "endpoint": str(proto.get("endpoint", "")),
            "backend": str(proto.get("backend", proto.get("format", ""))),
            "personas": _personas_cell(m, personas),
            "sources": sources, "toolkit": str(m.toolkit_version or "")}


def _personas_cell(m: RunManifest, personas: Any) -> str:
    """The runs page's personas column: the set a run records, or why it records none."""
    if isinstance(personas, dict):
        count = f"{personas['count']} personas, " if isinstance(personas.get("count"), int) else ""
        return f"{personas.get('name')} ({count}sha256 {str(personas.get('digest', ''))[:12]}…)"
    if m.mode == "self":
        return "none (a run without personas)"
    return "not recorded (import --personas FILE records it)"


def _runs_page(data: SiteData) -> str:
    rows = []
    for m in data.runs:
        rows.append({"run_id": m.run_id, "link": f"runs/{run_slug(m.run_id)}.html", "model": m.model,
                     "variant": m.variant, "T": f"{m.temperature:g}", "mode": m.mode,
                     "instrument": m.instrument["name"], "rows": m.rows, **_provenance(m),
                     "fingerprint": m.fingerprint[:16] + "…"})
    return ('<p class="note">Each run links to its personas, their ratings and the stored responses. The fingerprint '
            "is a digest of the run's content (<code>toolkit verify</code> re-derives it).</p>"
            + H.table(pl.DataFrame(rows), table_id="runs", links={"run_id": "link"}))


def _persona_texts(m: RunManifest, given: PersonaSet | None,
                   carried: Sequence[PersonaSet] = ()) -> tuple[dict[int, str], str]:
    """The persona descriptions of a run and where they come from: the persona set its manifest
    names (the file given, one a bundle carried, or a shipped set, when the digests agree), else
    the file given or the one set a bundle carried, labelled unchecked (imported runs do not
    record their persona set)."""
    named = named_set(m.protocol)
    candidates = ([given] if given is not None else []) + list(carried) + [shipped_named(m.protocol)]
    if named:
        for pset in filter(None, candidates):
            if pset.digest == named.get("digest"):
                return dict(enumerate(pset.personas)), f"persona set {pset.name} (digest checked)"
        return {}, (f"the run names persona set {named.get('name')!r}; pass that file with --personas to show the "
                    "texts")
    if given is not None:
        return dict(enumerate(given.personas)), f"{given.name} (given; not checked: the run does not record its set)"
    if len(carried) == 1:
        return (dict(enumerate(carried[0].personas)),
                f"{carried[0].name}, carried in the bundle (not checked: the run does not record its set)")
    return {}, "pass --personas FILE to show the persona texts (imported runs do not carry them)"


def _run_tables(data: SiteData, m: RunManifest) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The run's metrics and retention rows, which its page shows."""
    mine = data.metrics.filter(pl.col("run_id") == m.run_id) if len(data.metrics) else data.metrics
    ret = data.retention.filter(pl.col("run_id") == m.run_id) if len(data.retention) else data.retention
    return mine, ret


def _run_pages(data: SiteData, m: RunManifest, nav: list[tuple[str, str]], texts: tuple[dict[int, str], str],
               mine: pl.DataFrame, ret: pl.DataFrame) -> dict[str, bytes]:
    """A run's page and its personas' pages, by path in the site."""
    files: dict[str, str] = {}
    store = data.store
    inst = store.instrument(m.instrument["digest"])
    slug = run_slug(m.run_id)
    cols = ["persona_id", "item_id", "repetition", "rating", "failures", "response", "finish_reason"]
    if m.mode == "logprob":
        cols.append("digit_logprobs")
    df = pl.from_arrow(store.read_run(m, cols, generations="newest"))
    assert isinstance(df, pl.DataFrame)
    df = df.sort(["persona_id", "item_id", "repetition"], nulls_last=True)
    prov = _provenance(m)
    head = [f"<p>{H.esc(m.model)} · {H.esc(m.variant)} · T = {m.temperature:g} · {H.esc(m.mode)} · instrument "
            f"{H.esc(m.instrument['name'])} · {m.rows} rows</p>",
            "<table>" + "".join(f"<tr><th>{H.esc(k)}</th><td>{H.esc(v)}</td></tr>" for k, v in prov.items() if v)
            + f"<tr><th>fingerprint</th><td><code>{H.esc(m.fingerprint)}</code></td></tr></table>"]
    if len(mine):
        head.append("<h2>Metrics</h2>" + H.table(metrics_view(mine)))
    if len(ret):
        head.append("<h2>Retention</h2>" + H.table(_applicable(ret.drop("run_id"))))
    details = _details(df, inst, m)
    if m.mode == "self":
        body = "\n".join(head) + "<h2>Ratings per item</h2>" + details.get(None, "")
        return {f"runs/{slug}.html": H.page(f"Run {m.run_id}", body, nav, "", "../").encode("utf-8")}
    per_persona = df.group_by("persona_id", maintain_order=True).agg(
        pl.col("item_id").filter(pl.col("rating") >= 0).n_unique().alias("items_answered"),
        pl.col("rating").filter(pl.col("rating") >= 0).mean().round(2).alias("mean_rating"),
        (pl.col("rating") < 0).sum().alias("unparseable"))
    text, source = texts
    listing = per_persona.with_columns(
        pl.col("persona_id").map_elements(lambda p: _short(text.get(p, "")), return_dtype=pl.String).alias("persona"),
        pl.format(f"{slug}/p{{}}.html", pl.col("persona_id")).alias("link"))
    listing = listing.select("persona_id", "persona", "items_answered", "mean_rating", "unparseable", "link")
    if m.mode == "logprob":
        listing = listing.drop("items_answered", "mean_rating", "unparseable")
    legend = pl.DataFrame({"item": [it.id for it in inst.items], "group": [it.group for it in inst.items],
                           "text": [it.text for it in inst.items]})
    body = "\n".join(head) + (f'<h2>Personas</h2><p class="note">Texts: {H.esc(source)}.</p>'
                              + H.table(listing, table_id="personas", links={"persona_id": "link"})
                              + "<h2>Items</h2>" + H.table(legend, table_id="items"))
    files[f"runs/{slug}.html"] = H.page(f"Run {m.run_id}", body, nav, "", "../")
    for pid, detail in details.items():
        assert pid is not None  # a persona or logprob run: every row has a persona
        about = (f"<p><strong>Persona {pid}</strong> of run <a href=\"../{slug}.html\">{H.esc(m.run_id)}</a>"
                 f" ({H.esc(m.model)}, {H.esc(m.variant)}, T = {m.temperature:g}).</p>"
                 f"<blockquote>{H.esc(text.get(pid, 'text not available: ' + source))}</blockquote>")
        files[f"runs/{slug}/p{pid}.html"] = H.page(f"Persona {pid} · {m.model}", about + detail, nav, "", "../../")
    return {name: text.encode("utf-8") for name, text in files.items()}


def _short(text: str, width: int = 90) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _esc(col: pl.Expr) -> pl.Expr:
    """html.escape, column-wise."""
    for raw, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"), ("'", "&#x27;")):
        col = col.str.replace_all(raw, entity, literal=True)
    return col


def _two_decimals(col: pl.Expr) -> pl.Expr:
    """A non-negative number as text with two decimals (3.7 -> "3.70"), column-wise."""
    hundredths = (col * 100).round(0).cast(pl.Int64)
    return pl.concat_str([(hundredths // 100).cast(pl.String), pl.lit("."),
                          (hundredths % 100).cast(pl.String).str.zfill(2)])


LOGPROB_NOTE = ('<p class="note">A logprob cell stores one next-token distribution: P(v) is the probability of the '
                "digit v renormalised over the scale's digits, the answer the logit method scores.</p>")
RESPONSES_HEAD = ("<table><thead><tr><th>repetitions</th><th>rating</th><th>failed attempts</th><th>finish</th>"
                  "<th>response</th></tr></thead><tbody>")


def _details(df: pl.DataFrame, inst: Instrument, m: RunManifest) -> dict[int | None, str]:
    """Each persona's (or the self run's) answers as HTML: a row per item with its ratings (or,
    for a logprob run, its digit probabilities), then every stored response per item. Built
    column-wise for the whole run; only the pages themselves are assembled per persona. A
    persona page names an item by its id (the run page lists the items' texts and groups once:
    repeated on every page they were a third of a 1,200-page site); the self run's page keeps
    them."""
    items = pl.DataFrame({"item_id": [it.id for it in inst.items],
                          "item": [f"{it.id}. {_short(it.text, 80)}" if m.mode == "self" else str(it.id)
                                   for it in inst.items],
                          "group": [it.group for it in inst.items]}, schema_overrides={"item_id": pl.Int64})
    df = df.with_columns(pl.col("item_id").cast(pl.Int64))
    if m.mode == "logprob":
        L = np.array([[np.nan if v is None else v for v in row] for row in df["digit_logprobs"].to_list()],
                     dtype=np.float64).reshape(len(df), inst.n_points)
        probs = digit_probabilities(L)
        cells = df.select("persona_id", "item_id", pl.col("response").alias("top token")).with_columns(
            [pl.Series(f"P({v})", np.round(probs[:, k], 3)) for k, v in enumerate(range(inst.scale_min,
                                                                                       inst.scale_max + 1))])
        cells = cells.join(items, on="item_id", how="left").select("persona_id", "item", "group", "top token",
                                                                   *[c for c in cells.columns if c.startswith("P(")])
        return {pid: H.table(part.drop("persona_id"), table_id="ratings") + LOGPROB_NOTE
                for (pid,), part in cells.partition_by("persona_id", as_dict=True, maintain_order=True).items()}
    shown = pl.when(pl.col("rating") < 0).then(pl.lit("–")).otherwise(pl.col("rating").cast(pl.String))
    # a response that is only its rating says nothing the ratings row (and its failed-attempts row)
    # does not: it is counted, not repeated (the EM site was 56 MB, mostly such rows; every text
    # is in `export`)
    bare = pl.col("response").fill_null("").str.strip_chars() == pl.col("rating").cast(pl.String)
    keys = ["persona_id", "item_id", "response", "rating", "failures", "finish_reason"]
    # identical responses of one cell (same text, rating, attempts, finish) are one row listing their repetitions
    repeated = (df.filter(~bare).group_by(keys, maintain_order=True)
                .agg(pl.col("repetition").min().alias("first"), pl.col("repetition").cast(pl.String).str.join(", ")
                     .alias("reps"))
                .sort("persona_id", "item_id", "first", nulls_last=False, maintain_order=True))
    row_html = pl.concat_str([
        pl.lit('<tr><td class="num">'), pl.col("reps"), pl.lit('</td><td class="num">'), shown,
        pl.lit('</td><td class="num">'), pl.col("failures").cast(pl.String), pl.lit("</td><td>"),
        _esc(pl.col("finish_reason").fill_null("")), pl.lit("</td><td><pre>"), _esc(pl.col("response").fill_null("")),
        pl.lit("</pre></td></tr>")])
    rows = repeated.group_by("persona_id", "item_id", maintain_order=True).agg(row_html.str.join("").alias("rows_html"))
    cells = df.group_by("persona_id", "item_id", maintain_order=True).agg(
        shown.str.join(" ").alias("ratings"),
        pl.col("rating").filter(pl.col("rating") >= 0).mean().alias("mean"),
        (pl.col("rating") < 0).sum().alias("unparseable"),
        pl.len().alias("n"),
        pl.col("failures").cast(pl.String).str.join(" ").alias("failed attempts"),
        pl.col("failures").sum().alias("failed_total"),
        bare.sum().alias("bare"))
    cells = cells.join(rows, on=["persona_id", "item_id"], how="left", nulls_equal=True, maintain_order="left")
    cells = cells.join(items, on="item_id", how="left").with_columns(
        _two_decimals(pl.col("mean")).fill_null("no valid rating").alias("mean"),
        pl.when(pl.col("bare") < pl.col("n")).then(pl.concat_str([
            pl.lit("<details><summary>item "), pl.col("item_id").cast(pl.String), pl.lit(": "),
            (pl.col("n") - pl.col("bare")).cast(pl.String), pl.lit(" of "), pl.col("n").cast(pl.String),
            pl.lit(" response(s)</summary>" + RESPONSES_HEAD), pl.col("rows_html"),
            pl.lit("</tbody></table></details>")])).otherwise(pl.lit("")).alias("details"))
    out: dict[int | None, str] = {}
    for (pid,), part in cells.partition_by("persona_id", as_dict=True, maintain_order=True).items():
        shown_cols = (["item", "group"] if m.mode == "self" else ["item"]) + ["ratings", "mean"] + (
            ["unparseable"] if part["unparseable"].sum() else []) + (
            ["failed attempts"] if part["failed_total"].sum() else [])
        table = H.table(part.select(shown_cols), table_id="ratings")
        if "unparseable" not in shown_cols:
            table += '<p class="note">Every answer gave a rating.</p>'
        bare_total, total = int(part["bare"].sum()), int(part["n"].sum())
        note = (f'<p class="note">{bare_total} of {total} responses are their rating alone: the ratings above show '
                "them (with their failed attempts, when there were any). The others follow.</p>")
        out[pid] = table + "<h2>Stored responses</h2>" + note + "".join(part["details"].to_list())
    return out
