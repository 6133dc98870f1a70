"""The command line: a thin layer that parses options, calls one library function and prints.

One module per command family: store (runs in, out and around), analysis (offline numbers),
record (talking to a model), review (audits, claims, reports); options.py holds what they
share. The top-level ``cli.py`` and the ``toolkit`` console script both call ``entry``.
"""

from __future__ import annotations

import atexit
import os
import sys

import click

from . import analysis, record, review, store


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="persona-moral-toolkit")
def main() -> None:
    """Offline cached-replay toolkit for persona moral metrics (S, sigma_bar, R)."""


for family in (store, analysis, record, review):
    for command in family.COMMANDS:
        main.add_command(command)


def entry() -> None:
    """Console entry point: run the command, then leave without interpreter finalisation.

    Arrow (and polars) keep native worker threads; when the interpreter finalises while one is
    still winding down, libstdc++ aborts the process (exit 134, "terminate called without an
    active exception") after the command has already printed its result. Every file the
    toolkit writes is already durable (atomic writes, fsync) when a command returns, so we
    stop joblib's worker processes, run the exit handlers, flush, and end the process with the
    command's own exit code."""
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
