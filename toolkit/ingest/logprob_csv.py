"""The published digit-logprob CSV (logit method): per (persona, item), the log-probability of
each scale digit as the next token.

Required: persona_id, question_id, digit_<k>_logprob for every scale point k. Optional:
run_index (default 1), first_token (the sampled rating), raw_top_logprobs_json, temperature
(used when the file name carries none), collected_at. Other columns are ignored.
"""

from __future__ import annotations

import polars as pl

from ..protocol.instrument import Instrument
from .base import FormatRows, SourceFormat
from .source import Source, first_bad, nulls

BASE = ("persona_id", "question_id")
OPTIONAL = ("run_index", "first_token", "raw_top_logprobs_json", "temperature", "collected_at")


def digit_columns(inst: Instrument) -> list[str]:
    return [f"digit_{k}_logprob" for k in range(inst.scale_min, inst.scale_max + 1)]


def parse(src: Source) -> FormatRows:
    inst, n = src.instrument, src.table.height
    df = src.table
    src.ignore_extra(set(BASE + OPTIONAL) | set(digit_columns(inst)))
    digit_cols = []
    for name in digit_columns(inst):
        raw = df[name].str.strip_chars()
        val = raw.cast(pl.Float64, strict=False)
        bad = (val.is_null() & (raw != "")) | val.is_nan() | (val > 0) | (val == float("inf"))
        if (i := first_bad(bad)) is not None:
            raise src.error(f"column {name!r}: {raw[i]!r} is not a log-probability", i)
        digit_cols.append(val.alias(name))
    digits = pl.DataFrame(digit_cols)
    # A digit absent from the top-k list is empty (imputed later). What the digits together may
    # be (none all -inf, a total of at most 1) is the store's one row rule, applied to every
    # importer's rows (store/rows.py).
    first = src.optional("first_token", lambda: df["first_token"].str.strip_chars(),
                         pl.repeat("", n, dtype=pl.String, eager=True), "no sampled rating")
    first_int = first.cast(pl.Int64, strict=False)
    in_scale = first_int.is_between(inst.scale_min, inst.scale_max)
    temperature = None
    if "temperature" in df.columns:
        temps = df["temperature"].cast(pl.Float64, strict=False).unique()
        if len(temps) == 1 and temps[0] is not None:
            temperature = float(temps[0])
    rows = pl.DataFrame({
        "persona_id": src.int_column("persona_id"), "item_id": src.int_column("question_id"),
        "repetition": src.optional("run_index", lambda: src.int_column("run_index", lo=1),
                                   pl.repeat(1, n, dtype=pl.Int64, eager=True), "one repetition per cell"),
        "rating": pl.select(pl.when(in_scale).then(first_int).otherwise(-1).alias("r"))["r"],
        "failures": pl.repeat(0, n, dtype=pl.Int64, eager=True), "response": first,
        "digit_logprobs": digits.select(pl.concat_list(pl.all()).alias("lp"))["lp"],
        "top_logprobs": src.optional("raw_top_logprobs_json", lambda: df["raw_top_logprobs_json"],
                                     nulls(n, pl.String), "top-k lists left empty"),
        "collected_at": src.optional("collected_at", lambda: df["collected_at"], nulls(n, pl.String),
                                     "collection times left empty"),
    })
    return FormatRows("logprob", rows, temperature=temperature)


FORMAT = SourceFormat(
    name="logprob-csv", mode="logprob", required=lambda inst: (*BASE, *digit_columns(inst)),
    matches=lambda cols, inst: f"digit_{inst.scale_min}_logprob" in cols,
    parse=parse, summary="published digit log-probabilities: persona_id, question_id, digit_<k>_logprob[, ...]",
)
