"""The options every command family shares, and the one way a command fails or prints.

Defaults are never typed here: an option the user leaves out is None and the library's default
applies (AnalysisOptions, the parallel package); help texts show those defaults read from the
library, so the two cannot disagree.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..errors import ToolkitError
from ..formats import OUTPUT_FORMATS
from ..parallel import BACKENDS
from ..store.manifest import MODES

if TYPE_CHECKING:
    import polars as pl

    from ..analysis.result import Result
    from ..store import Store

F = TypeVar("F", bound=Callable[..., Any])

STORE_HELP = ("Store folder, or a bundle file to read (default: $TOOLKIT_STORE, else ./parquet, else the embedded "
              "demo store).")
MODE_CHOICE = click.Choice(MODES)


def store_option(f: F) -> F:
    return click.option("--store", "store_dir", type=click.Path(), envvar="TOOLKIT_STORE", help=STORE_HELP)(f)


def format_option(f: F) -> F:
    return click.option("--format", "fmt", type=click.Choice(OUTPUT_FORMATS), default="table", show_default=True,
                        help="Output format; csv and json keep full float precision.")(f)


def open_store(store_dir: str | None, *, write: bool = False) -> Store:
    from ..store.store import open_store as open_it  # loaded here: --help and --version stay fast

    return open_it(store_dir, write=write)


def selection_options(*, mode: bool = False) -> Callable[[F], F]:
    """--model, --variant, --temperature, --run-id (and --mode): the command gets one
    ``selection`` (toolkit.store.query.Selection)."""
    names = ("model", "variant", "temperature", "run_id", "mode")

    def deco(f: F) -> F:
        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from ..store.query import Selection

            given = {k: kwargs.pop(k) for k in names if k in kwargs}
            given["temperature"] = list(given.get("temperature") or ()) or None
            return f(*args, selection=Selection(**given), **kwargs)

        opts = [click.option("--model", default=None, help="Only these models (comma-separated)."),
                click.option("--variant", default=None, help="Only these variants (comma-separated)."),
                click.option("--temperature", "-t", type=float, multiple=True,
                             help="Only runs at this temperature (repeatable)."),
                click.option("--run-id", default=None, help="Only this run id (comma-separated for several).")]
        if mode:
            opts.append(click.option("--mode", type=MODE_CHOICE, default=None, help="Only runs of this mode."))
        for opt in reversed(opts):
            wrapper = opt(wrapper)
        return wrapper  # type: ignore[return-value]

    return deco


class LibraryDefault(click.Option):
    """An option whose default the library holds: None when the user leaves it out, so the
    library's value applies; --help reads that value when it is shown (a data library is
    imported then, not at start-up)."""

    def __init__(self, *args: Any, library_default: Callable[[], Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.library_default = library_default

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        record = super().get_help_record(ctx)
        if record is None:
            return None
        value = self.library_default()
        return record if value is None else (record[0], f"{record[1]}  [default: {value}]")


def field_default(cls: type, name: str) -> Callable[[], Any]:
    """The default of a dataclass field, read when needed."""
    return lambda: {f.name: f.default for f in dataclasses.fields(cls)}[name]


def _analysis_default(name: str) -> Any:
    from ..analysis.options import AnalysisOptions

    return field_default(AnalysisOptions, name)()


ANALYSIS_HELP = {
    "bootstrap": ("--bootstrap", int, "Persona bootstrap draws (shared by both runs of a paired comparison)."),
    "rerun_bootstrap": ("--rerun-bootstrap", int, "Rerun (repetition) bootstrap draws."),
    "seed": ("--seed", int, "User seed; combined with each run's content digest, never with time."),
    "jobs": ("--jobs", int, "Parallel workers (joblib)."),
    "backend": ("--parallel-backend", click.Choice(BACKENDS),
                "Where --jobs > 1 workers run: processes forked from a server that has the analysis imported, "
                "joblib's loky or threading, or dask (needs --scheduler). Results do not depend on it."),
    "retention": ("--retention", click.Choice(["family", "run"]),
                  "Personas a run keeps: those with a valid rating on every item, and (family) only those valid at "
                  "every temperature of the same model, or (run) each run's own."),
    "scheduler": ("--scheduler", str, "dask.distributed scheduler address (tcp://host:port) for --parallel-backend "
                                      "dask; the workers must see the store folder."),
    "ci_level": ("--ci-level", float, "Confidence level."),
    "ci_method": ("--ci-method", click.Choice(["bca", "percentile"]),
                  "Bootstrap interval: bias-corrected accelerated, or percentile."),
    "permutations": ("--permutations", int, "Permutation-test draws (0: no test)."),
    "min_shared": ("--min-shared", float, "Pair two runs only when they share at least this share of their personas "
                                          "(and enough of them for the test to reach the interval's verdict)."),
}


no_cache_option = click.option(
    "--no-cache", "cache", flag_value=False, default=None,
    help="Neither read nor write the store's results cache: compute everything again (the output is the same bytes).")


def _many_runs(store_dir: str | None, jobs: int) -> bool:
    """Whether the store holds enough runs for the compiled kernels to pay in each of ``jobs``
    workers (analysis.kernels.worth), counted from its manifest files without reading one: a
    hint for the fork server only (a selection may take fewer; results are the same bits)."""
    from ..analysis import kernels
    from ..store.store import Store, resolve_store

    if not kernels.available():
        return False
    try:
        runs = len(Store(resolve_store(store_dir)).manifest_files())
    except (ToolkitError, OSError):
        return False  # the command itself says what is wrong with the store
    return kernels.worth(-(-runs // jobs))


def analysis_options(*, rerun: bool = True, scheduler: bool = True, tests: bool = False) -> Callable[[F], F]:
    """The resampling and parallelism options (AnalysisOptions' fields) as one ``options``
    argument. Goes right above the command function, below @guard, so that a bad value is one
    line and exit 2."""
    fields = ["bootstrap", *(["rerun_bootstrap"] if rerun else []), "seed", "jobs", "backend", "retention",
              *(["scheduler"] if scheduler else []), *(["ci_level", "ci_method", "permutations", "min_shared"]
                                                       if tests else [])]

    def deco(f: F) -> F:
        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            old = kwargs.pop("old_backend", None)
            if old is not None:  # the old name keeps working for one release
                deprecated("--backend", "--parallel-backend")
                kwargs["backend"] = kwargs.get("backend") or old
            given = {k: kwargs.pop(k) for k in [*fields, "cache"]}  # --no-cache: no_cache_option
            from ..analysis.options import AnalysisOptions

            options = AnalysisOptions(**{k: v for k, v in given.items() if v is not None})
            if options.jobs > 1 and options.backend == "forkserver" and not options.scheduler:
                from ..parallel.forkserver import fork_server

                # it imports the analysis while this process does the same, and the compiled
                # kernels too when the store holds enough runs for them
                fork_server(trusted_main=True, kernels=_many_runs(kwargs.get("store_dir"), options.jobs))
            return f(*args, options=options, **kwargs)

        opts = [no_cache_option]
        for name in fields:
            flag, kind, text = ANALYSIS_HELP[name]
            extra = {"envvar": "TOOLKIT_DASK_SCHEDULER"} if name == "scheduler" else {}
            decls = [flag, "-j"] if name == "jobs" else [flag]
            opts.append(click.option(*decls, name, type=kind, default=None, help=text, cls=LibraryDefault,
                                     library_default=functools.partial(_analysis_default, name), **extra))
        opts.append(click.option("--backend", "old_backend", type=click.Choice(BACKENDS), default=None, hidden=True,
                                 help="Deprecated name of --parallel-backend."))
        for opt in reversed(opts):
            wrapper = opt(wrapper)
        return wrapper  # type: ignore[return-value]

    return deco


def deprecated(old: str, new: str) -> None:
    """An option's old spelling keeps working for one release, with this note (CHANGELOG.md)."""
    click.echo(f"note: {old} is now {new} here (the old name goes in the next release)", err=True)


def fail(message: str, code: int) -> None:
    one_line = " ".join(message.split())  # a library's multi-line message (pydantic, polars) as one line
    click.echo(f"error: {one_line[:2000]}", err=True)
    gc.collect()  # let Arrow's background threads finish while Arrow is alive (no abort at exit)
    sys.exit(code)


def guard(f: F) -> F:
    """Map bad input to one line on stderr and its exit code (2; 1 for a corrupt store), and an
    operating-system failure (disk full, read-only folder, unreadable file) to one line and 2."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except ToolkitError as exc:
            fail(str(exc), exc.exit_code)
        except OSError as exc:
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            fail(f"{where}{exc.strerror or exc}", 2)
        except click.exceptions.ClickException:
            raise
        except Exception as exc:  # a bug in the toolkit, not bad input: say so, traceback on request
            if os.environ.get("TOOLKIT_DEBUG"):
                raise
            fail(f"internal error (a bug in the toolkit, please report it): {type(exc).__name__}: {exc}; "
                 "TOOLKIT_DEBUG=1 shows the traceback", 3)

    return wrapper  # type: ignore[return-value]


def number_list(text: str | None, kind: Callable[[str], Any], option: str, what: str) -> list[Any] | None:
    """Parse a comma-separated option value; None when the option was not given."""
    if not text:
        return None
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ToolkitError(f"{option}: {text!r} is not a comma-separated list of {what}") from None


def ints(text: str | None, option: str) -> list[int] | None:
    return number_list(text, int, option, "integers")


def key_values(pairs: tuple[str, ...], option: str, expected: str = "KEY=VALUE") -> dict[str, str]:
    """``("a=1", "b=2")`` -> {"a": "1", "b": "2"}; an empty key or value is an error."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ToolkitError(f"{option} takes {expected}, not {pair!r}")
        out[key.strip()] = value
    return out


def emit(df: pl.DataFrame, fmt: str, caption: str | None = None) -> None:
    from ..report import format_frame

    click.echo(format_frame(df, fmt, caption=caption), nl=False)


COLUMNS_OPTION = click.option("--columns", default=None, metavar="NAME,...",
                              help="Print these columns (any of csv's) instead of the compact table view.")
DPI_OPTION = click.option("--dpi", type=float, default=None, help="Resolution of PNG figures (default 100).")


def show_table(df: pl.DataFrame, columns: str | None, fmt: str, compact: Callable[..., Any] | None = None) -> None:
    """Print what a table command shows: --columns, else for the terminal the compact view
    (``compact``, default the metrics view), else (csv, json, markdown, latex) every column."""
    from ..report.tables import chosen_columns

    emit(chosen_columns(df, columns, fmt, compact), fmt)


def check_plot(plot_path: str | None, dpi: float | None) -> None:
    """A figure's name and resolution are checked before any work is done."""
    if plot_path or dpi is not None:
        from ..report.figures import check_dpi, check_figure_path

        if plot_path:
            check_figure_path(plot_path)
        check_dpi(dpi)


def finish(result: Result | None = None, *, skipped: tuple[str, ...] | list[str] = ()) -> None:
    """The notes of a result, and every run it left out, on stderr; exit 1 unless every
    selected run made it."""
    problems = list(result.skipped if result is not None else skipped)
    for n in result.notes if result is not None else ():
        click.echo(f"note: {n}", err=True)
    for p in problems:
        click.echo(f"skipped: {p}", err=True)
    if problems:
        analyzed = result is None or len(result.frame) > 0
        others = "the others are above" if analyzed else "no selected run could be analyzed"
        click.echo(f"{len(problems)} selected run(s) could not be analyzed; {others}", err=True)
        sys.exit(1)


def records(rows: list[Any], columns: list[str]) -> pl.DataFrame:
    """Result objects (dataclasses) as a table of some of their fields."""
    import polars as pl

    return pl.DataFrame([r.__dict__ for r in rows]).select(columns)
