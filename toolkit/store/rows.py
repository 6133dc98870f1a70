"""What a completion row may hold: the one row rule of the recorder, the file importers and the
Inspect reader. A row that breaks it is refused at the door (an import names the file and row,
the recorder counts the reply as a failed attempt) instead of being stored for no analysis to
read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl

MAX_RESPONSE_BYTES = 1 << 20  # one reply, whoever sent it (the recorder's HTTP reply cap is this too)
LOGPROB_SLACK = 1e-6  # a server's rounding: a top-k list may sum to probability 1 + this
UNDERFLOW = -745.1332191019412  # exp of anything below is 0 in double precision


def digit_logprobs_problem(values: Sequence[float | None] | None) -> str | None:
    """Why a logprob row's digit log-probabilities cannot be analysed, or None. A digit may be
    missing (None: not in the top-k list; a row may miss them all, and the analysis says so);
    a present one is <= 0 (with slack) and not NaN; when digits are given, at least one must
    carry a probability a double can hold (the logit method normalises over the digits, and
    all-zero has no normalisation); the digits' total is at most 1."""
    if values is None:
        return "no digit log-probabilities"
    present = [float(v) for v in values if v is not None]
    bad = next((v for v in present if math.isnan(v) or v > LOGPROB_SLACK), None)
    if bad is not None:
        return f"impossible log-probability {bad!r}"
    if present and not any(v >= UNDERFLOW for v in present):
        return ("no digit has a usable probability (every digit log-probability is missing, -inf or below "
                f"{UNDERFLOW:.0f})")
    import numpy as np

    from ..numerics import exp  # the portable exp: a verdict must not depend on the CPU

    total = float(exp(np.minimum(np.array(present, dtype=np.float64), 0.0)).sum()) if present else 0.0
    if total > 1.0 + LOGPROB_SLACK:
        return f"digit probabilities sum to {total:.6g} > 1"
    return None


def response_problem(text: str | None) -> str | None:
    """Why a reply's text cannot be stored, or None."""
    if text is not None and len(text.encode("utf-8", "surrogatepass")) > MAX_RESPONSE_BYTES:
        return f"a response longer than {MAX_RESPONSE_BYTES} bytes"
    return None


def row_problem(mode: str, response: str | None, digit_logprobs: Sequence[float | None] | None) -> str | None:
    """The first problem of one row of a run in ``mode``, or None."""
    problem = response_problem(response)
    if problem is None and mode == "logprob":
        problem = digit_logprobs_problem(digit_logprobs)
    return problem


def first_problem(frame: pl.DataFrame, mode: str) -> tuple[int, str] | None:
    """(index, problem) of the first row of a parsed frame (polars: ``response`` and, for a
    logprob run, ``digit_logprobs``) that breaks the row rule, or None; for the importers."""
    import polars as pl

    if "response" in frame.columns:
        too_long = (frame["response"].str.len_bytes() > MAX_RESPONSE_BYTES).fill_null(False)
        if too_long.any():
            i = int(too_long.arg_true()[0])
            return i, str(response_problem(frame["response"][i]))
    if mode == "logprob" and "digit_logprobs" in frame.columns:
        column = frame["digit_logprobs"]
        assert isinstance(column, pl.Series)
        for i, values in enumerate(column.to_list()):
            problem = digit_logprobs_problem(values)
            if problem is not None:
                return i, problem
    return None
