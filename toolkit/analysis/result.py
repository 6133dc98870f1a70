"""What an analysis returns: its table, and the runs it left out with the reason for each.

Why a result object: a run that cannot be analyzed (unreadable, too few complete personas, no
baseline) must never vanish silently, and must never stop the other runs unless the caller
wants that. ``on_error="raise"`` makes the first such run an error; ``"skip"`` leaves it out
and names it in ``Result.skipped``, which every command prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import polars as pl

from ..errors import ToolkitError

OnError = Literal["raise", "skip"]
ON_ERROR = ("raise", "skip")


@dataclass(frozen=True)
class Result:
    frame: pl.DataFrame
    skipped: tuple[str, ...] = ()  # one line per run left out: "run ID: why"
    notes: tuple[str, ...] = ()  # what the reader should know about the rows that are there


def collector(on_error: OnError) -> list[str] | None:
    """Where the analysis records the runs it leaves out: a list with "skip", none with
    "raise" (the first one is then an error)."""
    if on_error not in ON_ERROR:
        raise ToolkitError(f"on_error is 'raise' or 'skip', not {on_error!r}")
    return [] if on_error == "skip" else None


def result(frame: pl.DataFrame, skipped: list[str] | None, notes: list[str] | None = None) -> Result:
    return Result(frame, tuple(skipped or ()), tuple(notes or ()))
