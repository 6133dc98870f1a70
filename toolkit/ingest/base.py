"""What a source format is: a detector over column names and a parser to rows.

Every format turns a ``Source`` (text cells) into the same rows: persona_id, item_id,
repetition, rating (-1 = no valid rating), failures, response, digit_logprobs, top_logprobs,
collected_at. What happens next (identity, duplicate slots, request keys, the manifest) is the
same for every format and lives in ``pipeline.py``: adding a format is adding one module and
one line in ``__init__.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import polars as pl

from ..protocol.instrument import Instrument
from .source import INT16_MAX, Source, first_bad, nulls

ROW_COLUMNS = ["persona_id", "item_id", "repetition", "rating", "failures", "response", "digit_logprobs",
               "top_logprobs", "collected_at"]


@dataclass
class FormatRows:
    mode: str  # persona | self | logprob
    rows: pl.DataFrame  # ROW_COLUMNS, one row per source row
    model: str | None = None  # identity the file itself carries (a column), if any
    variant: str | None = None
    temperature: float | None = None


@dataclass(frozen=True)
class SourceFormat:
    name: str
    mode: str | None  # None: decided per file (long format)
    required: Callable[[Instrument], Sequence[str]]
    matches: Callable[[Sequence[str], Instrument], bool]
    parse: Callable[[Source], FormatRows]
    summary: str


def rating_rows(src: Source, *, persona: str | None, item: str, repetition: str, rating: str, failures: str,
                response: str, collected_at: str) -> pl.DataFrame:
    """Rows of a sampled-answer source (persona or self): the shared reading of the published
    persona and self CSVs and of the long format, given each field's column name."""
    n, inst = src.table.height, src.instrument
    item_id = src.int_column(item)
    persona_id = src.int_column(persona) if persona else nulls(n, pl.Int64)
    rep = src.int_column(repetition, lo=1)
    value = src.int_column(rating, lo=None, hi=None)
    ok = value.is_between(inst.scale_min, inst.scale_max) | (value == -1)
    if (i := first_bad(~ok)) is not None:
        raise src.error(f"rating {value[i]} is outside the scale {inst.scale_min}-{inst.scale_max} (or -1)", i)
    return pl.DataFrame({
        "persona_id": persona_id, "item_id": item_id, "repetition": rep, "rating": value,
        "failures": src.optional(failures, lambda: src.int_column(failures, hi=INT16_MAX),
                                 pl.repeat(0, n, dtype=pl.Int64, eager=True), "failed attempts taken as 0"),
        "response": src.optional(response, lambda: src.table[response], nulls(n, pl.String),
                                 "responses left empty"),
        "digit_logprobs": nulls(n, pl.List(pl.Float64)), "top_logprobs": nulls(n, pl.String),
        "collected_at": src.optional(collected_at, lambda: src.table[collected_at], nulls(n, pl.String),
                                     "collection times left empty"),
    })
