"""Commands that move runs in, out and around the store: import, fetch, simulate, show, runs,
export, bundle, verify, compact, rm."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from ..errors import ToolkitError
from .options import (
    COLUMNS_OPTION,
    MODE_CHOICE,
    LibraryDefault,
    deprecated,
    emit,
    field_default,
    format_option,
    guard,
    ints,
    open_store,
    records,
    selection_options,
    show_table,
    store_option,
)

if TYPE_CHECKING:
    from ..store import Selection

RESULT_COLUMNS = ["run_id", "rows", "status", "path"]


@click.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--model", default=None, help="Model name (default: from the file, else its name).")
@click.option("--variant", default=None, help="Variant label (default: from the file, else its parent folder).")
@click.option("--temperature", type=float, default=None, help="Temperature (default: from _tempNN in the file name).")
@click.option("--mode", type=MODE_CHOICE, default=None, help="Run mode (default: detected from the columns).")
@click.option("--column-map", "column_map", multiple=True, metavar="FIELD=COLUMN[,...]",
              help="Long format: which column holds each field (persona, item, repetition, rating, response, "
                   "failures, collected_at, model, variant, temperature); repeatable or comma-separated.")
@click.option("--columns", "old_column_map", multiple=True, hidden=True, help="Old name of --column-map.")
@click.option("--instrument", default=None, help="Instrument name or JSON file (default: mfq30).")
@click.option("--personas", "personas_file", type=click.Path(dir_okay=False), default=None,
              help="The persona file that answered these runs (persona id = position): recorded with each run, "
                   "so that compare --paired pairs only runs of the same persona set.")
@click.option("--replace", is_flag=True, help="Overwrite a run that already holds different data.")
@store_option
@format_option
@guard
def import_cmd(paths: tuple[str, ...], model: str | None, variant: str | None, temperature: float | None,
               mode: str | None, column_map: tuple[str, ...], old_column_map: tuple[str, ...],
               instrument: str | None, personas_file: str | None, replace: bool, store_dir: str | None,
               fmt: str) -> None:
    """Import published CSV files or folders (persona, self, logprob), long-format files,
    Inspect logs, or a bundle.

    Long format: CSV, Parquet or JSON Lines, one row per completion (see README). Files are
    checked and written one by one and the runs committed together at the end: on any error no
    run changes. A missing optional column is a note, not an error.
    """
    from ..ingest.importer import import_sources

    if old_column_map:
        deprecated("--columns", "--column-map")
    columns: dict[str, str] = {}  # file column -> field
    for part in (p for text in column_map + old_column_map for p in text.split(",")):
        field, sep, column = part.partition("=")
        if not sep or not field.strip() or not column.strip():
            raise ToolkitError(f"--column-map expects FIELD=COLUMN pairs separated by commas, not {part!r}")
        columns[column.strip()] = field.strip()
    results = import_sources(open_store(store_dir, write=True), paths, model=model, variant=variant,
                             temperature=temperature, mode=mode, columns=columns or None, instrument=instrument,
                             personas=personas_file, replace=replace)
    emit(records(results, RESULT_COLUMNS), fmt)
    for r in results:
        if r.notes:
            click.echo(f"note: {r.path}: {r.notes}", err=True)


@click.command()
@click.argument("name")
@click.option("--from", "source", type=click.Path(), default=None,
              help="Take the files from this local folder instead of downloading them.")
@click.option("--quiet", is_flag=True, help="No download progress.")
@store_option
@format_option
@guard
def fetch(name: str, source: str | None, quiet: bool, store_dir: str | None, fmt: str) -> None:
    """Download (or take --from DIR) a catalogued dataset, check every SHA-256, import it."""
    from ..datasets.catalogue import get_dataset
    from ..datasets.fetch import fetch as run_fetch

    results = run_fetch(open_store(store_dir, write=True), get_dataset(name), source, progress=not quiet)
    emit(records(results, RESULT_COLUMNS), fmt)


def _spec(name: str, of: str = "Spec") -> dict[str, Any]:
    """An option whose default is the simulator's (a field of ingest.simulate.Spec or Effect)."""

    def default() -> Any:
        from ..ingest import simulate

        return field_default(getattr(simulate, of), name)()

    return {"default": None, "cls": LibraryDefault, "library_default": default}


@click.command()
@click.option("--runs", type=click.IntRange(min=1), required=True, help="How many runs to draw.")
@click.option("--persona-count", "personas", type=click.IntRange(min=2), help="Personas a run.", **_spec("personas"))
@click.option("--personas", "old_personas", type=click.IntRange(min=2), default=None, hidden=True,
              help="Old name of --persona-count.")
@click.option("--repetitions", type=click.IntRange(min=1), help="Answers a cell.", **_spec("repetitions"))
@click.option("--items-from", "items_from", default=None, help="Instrument name or file (default: mfq30).")
@click.option("--spread-personas", type=float, **_spec("spread_personas"),
              help="Std of the personas' latent means around each item's centre (scale points).")
@click.option("--spread-within", type=float, **_spec("spread_within"),
              help="Std of one persona's answers around its latent mean (scale points).")
@click.option("--invalid-share", type=float, **_spec("invalid_share"),
              help="Probability that an answer is unparseable (stored as rating -1).")
@click.option("--temperature", type=float, help="Label of the runs.", **_spec("temperature"))
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--model-prefix", default="sim", show_default=True, help="Models are named PREFIX-0000, ...")
@click.option("--paired", is_flag=True,
              help="--runs pairs: a 'base' run and an effect run per model, answered by the same personas on the "
                   "same items (compare --paired pairs them), the effect below applied to the second.")
@click.option("--effect-shift", "shift", type=float, **_spec("shift", "Effect"),
              help="With --paired: every latent mean moves by this many scale points.")
@click.option("--effect-persona-factor", "persona_factor", type=float, **_spec("persona_factor", "Effect"),
              help="With --paired: the personas' spread around the item centres is multiplied by this.")
@click.option("--effect-within-factor", "within_factor", type=float, **_spec("within_factor", "Effect"),
              help="With --paired: the within-cell spread (one persona's inconsistency) is multiplied by this.")
@store_option
@format_option
@guard
def simulate(runs: int, personas: int | None, old_personas: int | None, items_from: str | None, seed: int,
             model_prefix: str, paired: bool, shift: float | None, persona_factor: float | None,
             within_factor: float | None, store_dir: str | None, fmt: str, **spec_fields: float | None) -> None:
    """Write simulated runs with known ground truth (provenance `simulated`; never model data).

    Prints the run ids; the table, csv and json formats add each run's true S and sigma_bar, and
    with --paired every truth and what the estimators average to at the run's repetitions."""
    from ..ingest import simulate as sim
    from ..protocol.instrument import load_instrument

    if old_personas is not None:
        deprecated("--personas", "--persona-count")
    given = {k: v for k, v in {**spec_fields, "personas": personas or old_personas}.items() if v is not None}
    spec = sim.Spec(**given)  # type: ignore[arg-type]
    store, instrument = open_store(store_dir, write=True), load_instrument(items_from)
    changes: dict[str, Any] = {"shift": shift, "persona_factor": persona_factor, "within_factor": within_factor}
    effect = sim.Effect(**{k: v for k, v in changes.items() if v is not None})
    if paired:
        truths = sim.simulate_pairs(store, instrument, pairs=runs, spec=spec, effect=effect, seed=seed,
                                    model_prefix=model_prefix)
        emit(records(truths, ["run_id", "variant", "true_S", "true_sigma_bar", "true_R", "expected_S",
                              "expected_sigma_bar", "expected_R"]), fmt)
        return
    if effect != sim.Effect():
        raise ToolkitError("the --effect-* options describe a paired design: add --paired")
    truths = sim.simulate(store, instrument, runs=runs, spec=spec, seed=seed, model_prefix=model_prefix)
    emit(records(truths, ["run_id", "true_S", "true_sigma_bar"]), fmt)


@click.command()
@selection_options(mode=True)
@click.option("--persona", default=None, help="Only these persona ids (comma-separated).")
@click.option("--item", default=None, help="Only these item ids (comma-separated).")
@click.option("--repetition", default=None, help="Only these repetitions (comma-separated).")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="At most this many completions.")
@store_option
@click.option("--format", "fmt", type=click.Choice(["text", "csv", "json"]), default="text", show_default=True)
@guard
def show(selection: Selection, persona: str | None, item: str | None, repetition: str | None, limit: int,
         store_dir: str | None, fmt: str) -> None:
    """Print stored completions: request, every attempt's raw text, response, rating, source and
    time; for a logprob cell, the digits' probabilities and the top of its top-k list."""
    from ..report.completions import completions, render

    store = open_store(store_dir)
    df = completions(store, selection.resolve(store), persona=ints(persona, "--persona"), item=ints(item, "--item"),
                     repetition=ints(repetition, "--repetition"), limit=limit)
    if fmt == "text":
        click.echo(render(df) or "no stored completion matches\n", nl=False)
    else:
        emit(df.with_columns(df["attempts"].list.join("\x1e")) if fmt == "csv" else df, fmt)


@click.command()
@selection_options(mode=True)
@COLUMNS_OPTION
@store_option
@format_option
@guard
def runs(selection: Selection, columns: str | None, store_dir: str | None, fmt: str) -> None:
    """List the runs in the store with row counts, valid-rating share and fingerprint."""
    from ..report.tables import runs_view
    from ..store.summary import run_table

    show_table(run_table(open_store(store_dir), selection), columns, fmt, runs_view)


@click.command()
@selection_options()
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Folder to write into (files already there are never overwritten).")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet", "jsonl"]), default="csv", show_default=True,
              help="csv: the published tree (import restores the runs); parquet/jsonl: every stored column.")
@store_option
@guard
def export(selection: Selection, out_dir: str, fmt: str, store_dir: str | None) -> None:
    """Write runs out (all runs by default) as the published CSV tree, Parquet or JSON Lines."""
    from ..report.export import export_runs

    store = open_store(store_dir)
    for e in export_runs(store, selection.resolve(store), out_dir, fmt):
        click.echo(f"{e.run_id}\t{e.rows} rows\t{e.path}")


@click.command()
@selection_options(mode=True)
@click.option("--out", "out_file", type=click.Path(dir_okay=False), required=True, help="The bundle file to write.")
@click.option("--personas", "personas_file", default=None,
              help="Also carry this persona file (recorded runs' own shipped sets are carried anyway).")
@click.option("--with-cache", "with_cache", is_flag=True,
              help="Also carry the results-cache entries computed from these runs alone, so that the reviewer's "
                   "`analyze` and `report` need not recompute them (`toolkit verify BUNDLE` recomputes them; "
                   "`audit` never reads them).")
@store_option
@guard
def bundle(selection: Selection, out_file: str, personas_file: str | None, with_cache: bool,
           store_dir: str | None) -> None:
    """Write the selected runs (manifests, segments, instruments, persona files) as one file with
    a digest over its contents: what an author hands to a reviewer."""
    from ..store.bundle import persona_payloads, write_bundle

    store = open_store(store_dir)
    chosen = selection.resolve(store, empty_ok=True)
    info = write_bundle(store, chosen, out_file, personas=persona_payloads(chosen, personas_file),
                        cache=with_cache)
    click.echo(f"bundle: {info.path} ({len(info.runs)} runs, {len(info.members)} members, digest {info.digest})")


@click.command()
@click.argument("bundle", required=False, type=click.Path(dir_okay=False))
@store_option
@guard
def verify(bundle: str | None, store_dir: str | None) -> None:
    """Re-hash every segment and re-derive every fingerprint and request key; exit 1 on any problem.

    With a BUNDLE file: also every member against the bundle's index and the index against its
    digest (the first damaged member is named)."""
    from ..errors import StoreCorrupt
    from ..store import Problem
    from ..store.bundle import open_bundle

    digest = ""
    if bundle:
        try:
            store, info = open_bundle(bundle)
        except StoreCorrupt as exc:
            click.echo(f"PROBLEM {exc}")
            click.echo(f"verify: bundle {bundle} is damaged", err=True)
            sys.exit(1)
        where, digest = f"bundle {bundle}", f", digest {info.digest}"
    else:
        store = open_store(store_dir)
        where = str(store.root)
    problems = store.verify()
    from ..analysis.cache import recheck

    checked, unreached, wrong = recheck(store) if not problems else (0, 0, [])
    problems += [Problem(f"cache entry {name}", why) for name, why in wrong]
    for p in problems:
        click.echo(f"PROBLEM {p}")
    if problems:
        click.echo(f"verify: {len(problems)} problem(s) in {where}", err=True)
        sys.exit(1)
    n = len(store.runs()) if store.runs_dir.is_dir() else 0
    cached = (f", {checked} results-cache entries recomputed" + (f" ({unreached} no run reaches)" if unreached else "")
              if checked or unreached else "")
    click.echo(f"verify: ok ({where}: {n} runs{digest}{cached})" if bundle
               else f"verify: ok ({n} runs{cached}) in {where}")


@click.command()
@click.option("--run-id", default=None, help="Only this run (default: every run).")
@click.option("--grace", type=float, default=3600.0, show_default=True,
              help="Delete unreferenced objects older than this many seconds.")
@store_option
@guard
def compact(run_id: str | None, grace: float, store_dir: str | None) -> None:
    """Rewrite each run's segments as one (fingerprints unchanged), then delete unreferenced objects."""
    store = open_store(store_dir, write=True)
    for before, m in store.compact_runs(run_id):
        click.echo(f"{m.run_id}: {before} segment(s) -> 1, fingerprint {m.fingerprint[:16]}… unchanged")
    click.echo(f"removed {len(store.gc(grace))} unreferenced object(s)")
    from ..analysis.cache import code_digest

    pruned = store.prune_cache(code_digest())
    click.echo(f"removed {pruned} results-cache {'entry' if pruned == 1 else 'entries'} no run reaches")


@click.command("rm")
@click.argument("run_ids", nargs=-1, required=True)
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@store_option
@guard
def rm(run_ids: tuple[str, ...], dry_run: bool, store_dir: str | None) -> None:
    """Remove runs (a bad or test run) from the store: their manifests now, their segments at the
    next `toolkit compact`. Every RUN_ID is checked first; an unknown one removes nothing."""
    store = open_store(store_dir, write=True)
    for m in store.remove_runs(list(run_ids), dry_run=dry_run):
        click.echo(f"{'would remove' if dry_run else 'removed'} {m.run_id} ({m.rows} rows)")
    if not dry_run:
        click.echo("its segments are freed by the next `toolkit compact`")


COMMANDS = [import_cmd, fetch, simulate, show, runs, export, bundle, verify, compact, rm]
