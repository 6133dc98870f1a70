"""Commands that compute from stored runs, offline: analyze, compare, profiles, diagnose,
power, curves, consistency."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from .options import (
    COLUMNS_OPTION,
    DPI_OPTION,
    analysis_options,
    check_plot,
    emit,
    finish,
    format_option,
    guard,
    ints,
    no_cache_option,
    number_list,
    open_store,
    selection_options,
    show_table,
    store_option,
)

if TYPE_CHECKING:
    from ..analysis.options import AnalysisOptions
    from ..store import Selection

BY_RUN_OR_GROUP = click.option("--by", type=click.Choice(["run", "group"]), default="run", show_default=True,
                               help="'group' adds one row per item group (moral foundation).")
BASELINE_OPTION = click.option("--baseline", default="base", show_default=True,
                               help="Variant every other variant is compared with.")


def _plot(draw: str, plot_path: str | None, dpi: float | None, *args: object, **kwargs: object) -> None:
    """Draw a figure with one of report.figures' functions and say where it went."""
    if plot_path:
        from ..report import figures

        with figures.figure_options(dpi):
            click.echo(f"figure: {getattr(figures, draw)(*args, plot_path, **kwargs)}", err=True)


@click.command()
@selection_options()
@BY_RUN_OR_GROUP
@click.option("--corrected", is_flag=True,
              help="Also sigma_bar and R corrected for the bias of the sample SD (cells' SD / c4(n), cells with "
                   "fewer than 2 answers left out and counted); the published values stay as they are.")
@COLUMNS_OPTION
@store_option
@format_option
@guard
@analysis_options()
def analyze(selection: Selection, by: str, corrected: bool, columns: str | None, options: AnalysisOptions,
            store_dir: str | None, fmt: str) -> None:
    """Moral susceptibility S, sigma_bar and robustness R = 1/sigma_bar with bootstrap SEs, and
    S_corrected (S without the spread finite repetitions add; docs/statistics.md)."""
    from ..analysis.api import analyze as run_analysis
    from ..report.tables import corrected_view

    result = run_analysis(open_store(store_dir), selection, by_group=by == "group", options=options, on_error="skip",
                          corrected=corrected)
    if len(result.frame) or not result.skipped or fmt != "table":  # no empty table above "could not be analyzed"
        show_table(result.frame, columns, fmt, corrected_view if corrected else None)
    finish(result)


@click.command()
@selection_options()
@BASELINE_OPTION
@BY_RUN_OR_GROUP
@click.option("--summary", is_flag=True, help="Print the mean changes per variant instead of one row per run.")
@click.option("--paired", is_flag=True,
              help="Differences with bootstrap SE, interval and permutation p-value (Holm across groups), one row per "
                   "run, group and metric; runs of the same personas are resampled together.")
@click.option("--unpaired", is_flag=True, help="With --paired: treat the two runs as independent samples anyway.")
@click.option("--wide", is_flag=True, help="With --paired: also the Δ% intervals, persona counts and run ids.")
@click.option("--corrected", is_flag=True, help="With --paired: also sigma_bar_corrected and R_corrected (as "
              "`analyze --corrected` computes them), from the same draws and permutations.")
@COLUMNS_OPTION
@store_option
@format_option
@guard
@analysis_options(tests=True)
def compare(selection: Selection, baseline: str, by: str, summary: bool, paired: bool, unpaired: bool, wide: bool,
            corrected: bool, columns: str | None, options: AnalysisOptions, store_dir: str | None, fmt: str) -> None:
    """Change of S, R and sigma_bar against the baseline variant of each model: relative change
    (%) with propagated SEs, or with --paired the difference with an interval and a test."""
    import functools

    from ..analysis import api
    from ..errors import ToolkitError
    from ..report.tables import comparison_view

    store = open_store(store_dir)
    if paired or unpaired:
        if summary or columns:
            raise ToolkitError("--summary and --columns do not apply to --paired (--wide adds its other columns)")
        result = api.paired_compare(store, selection, baseline=baseline, by_group=by == "group", unpaired=unpaired,
                                    corrected=corrected, options=options, on_error="skip")
        emit(result.frame if wide else result.frame.select(api.PAIRED_COLUMNS), fmt)
        if fmt == "table" and len(result.frame):
            click.echo(api.PAIRED_READING)
        for note in api.pairing_notes(result.frame) if not unpaired else []:
            click.echo(f"note: {note}", err=True)
        finish(result)
        return
    if corrected:
        raise ToolkitError("--corrected applies to --paired (or --unpaired) comparisons")
    result = api.compare_runs(store, selection, baseline=baseline, by_group=by == "group", options=options)
    if summary:
        emit(api.compare_summary(result.frame, baseline=baseline), fmt)
    else:
        show_table(result.frame, columns, fmt, functools.partial(comparison_view, baseline=baseline))
    finish(result)


@click.command()
@selection_options()
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
@store_option
@format_option
@guard
def profiles(selection: Selection, of: str | None, personas_file: str | None, persona_ids: str | None,
             exclude_persona_ids: str | None, plot_path: str | None, dpi: float | None, store_dir: str | None,
             fmt: str) -> None:
    """Moral-foundation profiles: mean rating and mean within-question std per group, of
    no-persona ("self") runs, of each persona, or over a set of personas (paper Appendix C)."""
    from ..analysis.foundations import persona_filter, profile_kind, profiles_of, self_profiles_of_models
    from ..errors import ToolkitError

    filt = persona_filter(personas_file, ints(persona_ids, "--persona-ids"),
                          ints(exclude_persona_ids, "--exclude-persona-ids"))
    if plot_path and profile_kind(of, filt) != "set":  # before any work
        raise ToolkitError("--plot draws set profiles: use it with --of set")
    check_plot(plot_path, dpi)
    store = open_store(store_dir)
    result = profiles_of(store, selection, of=of, personas=filt, on_error="skip")
    emit(result.frame, fmt)
    if plot_path and len(result.frame):
        selves = self_profiles_of_models(store, selection, result.frame["model"].unique().to_list())
        _plot("plot_profile_comparison", plot_path, dpi, selves, result.frame)
    finish(result)


@click.command()
@selection_options()
@click.option("--by", type=click.Choice(["persona", "item"]), default="persona", show_default=True)
@BASELINE_OPTION
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Also a figure ranking what the table lists (personas or items) by their shift: FILE.png, .pdf "
                   "or .svg ([plot] extra).")
@DPI_OPTION
@store_option
@format_option
@guard
def diagnose(selection: Selection, by: str, baseline: str, plot_path: str | None, dpi: float | None,
             store_dir: str | None, fmt: str) -> None:
    """Per persona or item: contributions to S and sigma_bar, and the paired shift from the
    baseline run (which personas collapse, which items move)."""
    from ..analysis.diagnose import diagnose as run_diagnose

    check_plot(plot_path, dpi)
    result = run_diagnose(open_store(store_dir), selection, by=by, baseline=baseline, on_error="skip")
    emit(result.frame, fmt)
    _plot("plot_shifts", plot_path, dpi, result.frame, by=by)  # the figure ranks what the table lists
    finish(result)


@click.command()
@selection_options()
@click.option("--metric", type=click.Choice(["R", "S", "sigma_bar", "S_corrected"]), default="R", show_default=True)
@click.option("--deltas", default="10,20,30,50", show_default=True, help="Changes to detect, in % of the run's value.")
@click.option("--persona-counts", default="25,50,100,200", show_default=True, help="Study sizes: personas.")
@click.option("--repetition-counts", default="5,10,20", show_default=True, help="Study sizes: repetitions a cell.")
@click.option("--alpha", type=float, default=0.05, show_default=True, help="Two-sided test level.")
@click.option("--power", "target", type=float, default=0.8, show_default=True,
              help="Target power of the smallest detectable change (mde_pct).")
@click.option("--sims", type=int, default=200, show_default=True, help="Pseudo-studies per size.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--simulate", "simulate", type=click.IntRange(min=0), default=0, show_default=True, metavar="N",
              help="Also the power simulated with N paired studies per size and change, drawn from the run's "
                   "fitted generating model with the change planted, each tested by compare --paired's "
                   "permutation test (sim_power_* columns).")
@click.option("--permutations", type=click.IntRange(min=1), default=1000, show_default=True,
              help="With --simulate: permutations of each simulated study's test.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --simulate: worker processes (results do not depend on it).")
@no_cache_option
@store_option
@format_option
@guard
def power(selection: Selection, metric: str, deltas: str, persona_counts: str, repetition_counts: str, alpha: float,
          target: float, sims: int, seed: int, simulate: int, permutations: int, jobs: int, cache: bool | None,
          store_dir: str | None, fmt: str) -> None:
    """How many personas and repetitions detect a change of X% with power 0.8? From one stored
    persona run: paired pseudo-studies resampled from its own cells give the SE of a difference
    at each size; the power is the two-sided normal test's. --simulate N adds the power of the
    permutation test itself on N simulated studies per size and change."""
    from ..analysis.options import AnalysisOptions
    from ..analysis.power import CAVEATS
    from ..analysis.power import power as run_power

    emit(run_power(open_store(store_dir), selection, metric=metric,
                   deltas=number_list(deltas, float, "--deltas", "numbers") or [],
                   personas=ints(persona_counts, "--persona-counts") or [],
                   repetitions=ints(repetition_counts, "--repetition-counts") or [], alpha=alpha, target=target,
                   sims=sims, simulate=simulate,
                   options=AnalysisOptions(seed=seed, permutations=permutations, jobs=jobs, cache=cache is not False)),
         fmt)
    if metric in CAVEATS and not simulate:
        click.echo(f"note: {CAVEATS[metric]}", err=True)


@click.command()
@selection_options()
@click.option("--tmin", type=float, default=0.35, show_default=True)
@click.option("--tmax", type=float, default=1.25, show_default=True)
@click.option("--points", type=int, default=201, show_default=True)
@click.option("--temperatures", default=None, help="Explicit comma-separated temperatures (overrides the grid).")
@BY_RUN_OR_GROUP
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Also a figure of R(T) and S(T): FILE.png, .pdf or .svg (needs the [plot] extra).")
@DPI_OPTION
@click.option("--all", "all_rows", is_flag=True, help="In the terminal table, every temperature (default: 5).")
@COLUMNS_OPTION
@store_option
@format_option
@guard
@analysis_options(rerun=False)
def curves(selection: Selection, tmin: float, tmax: float, points: int, temperatures: str | None, by: str,
           plot_path: str | None, dpi: float | None, all_rows: bool, columns: str | None, options: AnalysisOptions,
           store_dir: str | None, fmt: str) -> None:
    """R(T), S(T), sigma_bar(T) of logprob runs by the logit method (exact distributions)."""
    from ..analysis.api import curves as run_curves
    from ..report.tables import curves_shown, curves_view

    check_plot(plot_path, dpi)
    result = run_curves(open_store(store_dir), selection, tmin=tmin, tmax=tmax, points=points,
                        temperatures=number_list(temperatures, float, "--temperatures", "numbers"),
                        by_group=by == "group", options=options, on_error="skip")
    shown, line = curves_shown(result.frame) if fmt == "table" and not all_rows else (result.frame, None)
    if len(shown) or not result.skipped or fmt != "table":  # no empty table above "could not be analyzed"
        show_table(shown, columns, fmt, curves_view)
    if line:
        click.echo(line, err=True)
    if len(result.frame):
        _plot("plot_curves", plot_path, dpi, result.frame)
    finish(result)


@click.command()
@selection_options()
@store_option
@format_option
@guard
@analysis_options(scheduler=False)
def consistency(selection: Selection, options: AnalysisOptions, store_dir: str | None, fmt: str) -> None:
    """Sampled and logit estimates side by side, for models with both kinds of run (at every
    temperature of the sampled runs)."""
    from ..analysis.api import consistency as run_consistency

    emit(run_consistency(open_store(store_dir), selection.but(temperature=None), options=options), fmt)


COMMANDS = [analyze, compare, profiles, diagnose, power, curves, consistency]
