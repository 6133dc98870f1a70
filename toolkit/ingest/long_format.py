"""The generic long format: one row per completion from any pipeline, in CSV, Parquet or JSON
Lines, under these column names (``--columns persona=pid,item=qid,...`` maps other names):

  item (required)        the instrument's item id
  rating (required)      the extracted rating; empty or -1 = no valid rating
  persona                persona id; without it the run is a no-persona ("self") run
  repetition             1, 2, ... per (persona, item); without it rows are numbered in file order
  response, failures, collected_at   as in the published CSVs
  model, variant, temperature        the run's identity, when one value for the whole file

Other columns are ignored (named in the import summary).
"""

from __future__ import annotations

import polars as pl

from .base import FormatRows, SourceFormat, rating_rows
from .source import Source

FIELDS = ("persona", "item", "repetition", "rating", "response", "failures", "collected_at", "model", "variant",
          "temperature")
NAME = "long"


def _constant(src: Source, col: str) -> str | None:
    if col not in src.columns:
        return None
    values = src.table[col].drop_nulls().unique()
    if len(values) != 1:
        raise src.error(f"column {col!r} must hold one value for the whole file (one file is one run); "
                        f"it holds {len(values)}")
    return str(values[0])


def parse(src: Source) -> FormatRows:
    src.ignore_extra(set(FIELDS))
    df = src.table
    if "persona" in df.columns and df["persona"].null_count() == len(df):
        src.table = df = df.drop("persona")  # an exported self run: no persona anywhere
    # empty rating cell = no valid rating, like -1
    src.table = df = df.with_columns(pl.col("rating").fill_null("-1").str.strip_chars().replace("", "-1"))
    if "repetition" not in df.columns:
        keys = [c for c in ("persona", "item") if c in df.columns]
        src.table = df = df.with_columns(pl.int_range(1, pl.len() + 1).over(keys).cast(pl.String).alias("repetition"))
        src.notes.append("no 'repetition' column: repetitions numbered in file order per (persona, item)")
    persona = "persona" if "persona" in df.columns else None
    rows = rating_rows(src, persona=persona, item="item", repetition="repetition", rating="rating",
                       failures="failures", response="response", collected_at="collected_at")
    temperature = _constant(src, "temperature")
    try:
        temp = float(temperature) if temperature is not None else None
    except ValueError:
        raise src.error(f"column 'temperature': {temperature!r} is not a number") from None
    return FormatRows("persona" if persona else "self", rows, model=_constant(src, "model"),
                  variant=_constant(src, "variant"), temperature=temp)


FORMAT = SourceFormat(
    name=NAME, mode=None, required=lambda inst: ("item", "rating"),
    matches=lambda cols, inst: "item" in cols and "rating" in cols,
    parse=parse, summary="one row per completion: item, rating[, persona, repetition, response, ...]",
)
