"""Logical fingerprint of a run: a digest of *what was asked and answered*, not of how it was
stored. Segment boundaries, row order, compression and the Parquet writer cannot change it;
any change to an identity or value column, or to the manifest fields that name the run, does.

``fp2`` (format 2, docs/store-format.md): the SHA-256 of

    "toolkit-fp2" LF  canonical JSON of {run_id, model, variant, temperature, mode, instrument} LF
    then one line per row, rows sorted by request key, fields joined by US (0x1F):
      request_key run_id instrument persona_id item_id repetition rating failures
      response request attempts digit_logprobs top_logprobs finish_reason

Null is ``~``; text is ``<UTF-8 byte length>:<text>``; ``attempts`` is its element count then
each element as text, joined by RS (0x1E); ``digit_logprobs`` are the IEEE-754 bit patterns of
the doubles as unsigned decimal integers joined by RS (``~`` for a missing digit), so no float
formatting rule of any library can change a fingerprint. Left out on purpose: ``latency_s``,
``collected_at``, ``provenance`` and ``source_line`` describe when and how a row was collected
(a re-recording with the same answers keeps its fingerprint); the segment hash still protects
their bytes.

``fp1`` (format 1) is kept to verify stores written by the first release.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from ..hashing import canonical_json

FINGERPRINT_VERSION = "fp2"
_US = "\x1f"
_RS = "\x1e"
FINGERPRINT_COLUMNS = ["request_key", "run_id", "instrument", "persona_id", "item_id", "repetition", "rating",
                       "failures", "response", "request", "attempts", "digit_logprobs", "top_logprobs",
                       "finish_reason"]
FP1_COLUMNS = ["request_key", "rating", "failures", "response", "digit_logprobs"]


def identity(manifest: Any) -> dict[str, Any]:
    """The manifest fields that name a run (all of them are also encoded in its run id)."""
    return {"run_id": manifest.run_id, "model": manifest.model, "variant": manifest.variant,
            "temperature": manifest.temperature, "mode": manifest.mode,
            "instrument": manifest.instrument.get("digest")}


def _text(col: str) -> pl.Expr:
    c = pl.col(col)
    return pl.when(c.is_null()).then(pl.lit("~")).otherwise(
        pl.concat_str([c.str.len_bytes().cast(pl.String), pl.lit(":"), c]))


def _int(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.String).fill_null("~")


def _attempts(df: pl.DataFrame) -> pl.Series:
    col = df["attempts"]
    joined = col.list.eval(pl.concat_str([pl.element().str.len_bytes().cast(pl.String), pl.lit(":"),
                                          pl.element().fill_null("")])).list.join(_RS)
    frame = pl.DataFrame({"n": col.list.len().cast(pl.String), "j": joined})
    out = frame.select(pl.concat_str([pl.col("n"), pl.lit(_RS), pl.col("j")], ignore_nulls=False)).to_series()
    return out.fill_null("~").alias("attempts_fp")


def _logprob_bits(df: pl.DataFrame) -> pl.Series:
    """Each list as the bit patterns of its doubles: exact, and no float formatting involved."""
    col = df["digit_logprobs"]
    n = len(col)
    if col.null_count() == n:
        return pl.repeat("~", n, dtype=pl.String, eager=True).alias("lp_fp")
    lengths = col.list.len().fill_null(0).to_numpy()
    flat = col.explode()  # null lists explode to one null element: dropped below via the lengths
    values = flat.cast(pl.Float64).to_numpy(allow_copy=True).astype(np.float64)
    missing = flat.is_null().to_numpy()
    keep = np.repeat(lengths > 0, np.maximum(lengths, 1))
    bits = values[keep].view(np.uint64)
    text = pl.Series(bits, dtype=pl.UInt64).cast(pl.String)
    text = pl.select(pl.when(pl.Series(missing[keep])).then(pl.lit("~")).otherwise(text)).to_series()
    row = np.repeat(np.arange(n), lengths)
    joined = pl.DataFrame({"row": row, "t": text}).group_by("row", maintain_order=True).agg(pl.col("t").str.join(_RS))
    out = pl.DataFrame({"row": np.arange(n)}).join(joined, on="row", how="left")["t"].fill_null("")
    return pl.select(pl.when(col.is_null()).then(pl.lit("~")).otherwise(out)).to_series().alias("lp_fp")


def _blocks(lines: pl.Series, block: int = 65536) -> Iterator[bytes]:
    for start in range(0, len(lines), block):
        yield lines.slice(start, block).str.join("").item().encode("utf-8")


def fingerprint(table: pa.Table, manifest: Any) -> str:
    """fp2 of a run's rows (every FINGERPRINT_COLUMNS column) under its manifest's identity."""
    df = pl.from_arrow(table.select(FINGERPRINT_COLUMNS))
    assert isinstance(df, pl.DataFrame)
    df = df.sort("request_key")
    parts = [pl.col("request_key"), _text("run_id"), _text("instrument"), _int("persona_id"), _int("item_id"),
             _int("repetition"), _int("rating"), _int("failures"), _text("response"), _text("request"),
             pl.col("attempts_fp"), pl.col("lp_fp"), _text("top_logprobs"), _text("finish_reason")]
    with_lists = df.with_columns(_attempts(df), _logprob_bits(df))
    sep = [pl.lit(_US)] * len(parts)
    woven = [x for pair in zip(parts, sep) for x in pair][:-1] + [pl.lit("\n")]
    lines = with_lists.select(pl.concat_str(woven).alias("line"))["line"]
    h = hashlib.sha256(b"toolkit-fp2\n" + canonical_json(identity(manifest)).encode("utf-8") + b"\n")
    for chunk in _blocks(lines):
        h.update(chunk)
    return h.hexdigest()


def fingerprint_v1(table: pa.Table) -> str:
    """fp1, the first release's definition: request_key US rating US failures US response US
    logprobs (shortest repr) per row, sorted by key. Read-only: only old stores use it."""
    df = pl.from_arrow(table.select(FP1_COLUMNS))
    assert isinstance(df, pl.DataFrame)
    df = df.sort("request_key")
    lp = df["digit_logprobs"]
    if lp.null_count() == len(lp):
        lp_text = pl.repeat("~", len(df), dtype=pl.String, eager=True).alias("lp")
    else:
        lp_text = pl.Series("lp", [_fp1_logprobs(v) for v in lp.to_list()], dtype=pl.String)
    resp = pl.col("response")
    resp_enc = pl.when(resp.is_null()).then(pl.lit("~")).otherwise(
        pl.concat_str([resp.str.len_bytes().cast(pl.String), pl.lit(":"), resp]))
    lines = df.with_columns(lp_text).select(pl.concat_str(
        [pl.col("request_key"), pl.lit(_US), pl.col("rating").cast(pl.String), pl.lit(_US),
         pl.col("failures").cast(pl.String), pl.lit(_US), resp_enc, pl.lit(_US), pl.col("lp"), pl.lit("\n")]
    ).alias("line"))["line"]
    h = hashlib.sha256()
    for chunk in _blocks(lines):
        h.update(chunk)
    return h.hexdigest()


def _fp1_logprobs(values: list[float | None] | None) -> str:
    if values is None:
        return "~"
    return ",".join("~" if v is None else repr(float(v)) for v in values)
