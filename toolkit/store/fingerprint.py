"""Logical fingerprint of a run: a digest of *what was asked and answered*, not of how it was
stored. Segment boundaries, row order, compression and the Parquet writer cannot change it;
any change to an identity or value column, or to the manifest fields that name the run, does.

``fp2`` (format 2, docs/store-format.md): the SHA-256 of

    "toolkit-fp2" LF  canonical JSON of {run_id, model, variant, temperature, mode, instrument} LF
    then one line per row, rows sorted by request key, fields joined by US (0x1F):
      request_key run_id instrument persona_id item_id repetition rating failures
      response request attempts digit_logprobs top_logprobs finish_reason

Null is ``~``; text is ``<UTF-8 byte length>:<text>``; ``attempts`` is its element count, RS
(0x1E), then the elements as text joined by RS; ``digit_logprobs`` are the IEEE-754 bit patterns of
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
    """Each list as the bit patterns of its doubles: exact, and no float formatting involved.

    Read through Arrow's list layout (values + per-row lengths), so null lists, empty lists
    and null elements are told apart whatever a library's explode does with them."""
    col = df["digit_logprobs"]
    n = len(col)
    if col.null_count() == n:
        return pl.repeat("~", n, dtype=pl.String, eager=True).alias("lp_fp")
    arr = col.to_arrow()
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    lengths = arr.value_lengths().fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = arr.flatten()  # the elements of the non-null lists, in row order
    missing = flat.is_null().to_numpy(zero_copy_only=False)
    values = flat.fill_null(0.0).to_numpy(zero_copy_only=False).astype(np.float64)
    text = pl.Series(values.view(np.uint64), dtype=pl.UInt64).cast(pl.String)
    text = pl.select(pl.when(pl.Series(missing)).then(pl.lit("~")).otherwise(text)).to_series()
    row = np.repeat(np.arange(n), lengths)
    joined = pl.DataFrame({"row": row, "t": text}).group_by("row", maintain_order=True).agg(pl.col("t").str.join(_RS))
    out = pl.DataFrame({"row": np.arange(n)}).join(joined, on="row", how="left")["t"].fill_null("")
    return pl.select(pl.when(col.is_null()).then(pl.lit("~")).otherwise(out)).to_series().alias("lp_fp")


def _blocks(lines: pl.Series, block: int = 65536) -> Iterator[bytes | memoryview]:
    """The lines' UTF-8 bytes, in order: straight from the Arrow buffer when the column is one
    contiguous large_string array (no copy), else joined block by block."""
    arr = lines.to_arrow()
    if len(arr) == 0:
        return
    if isinstance(arr, pa.LargeStringArray) and arr.null_count == 0:
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)
        lo, hi = int(offsets[arr.offset]), int(offsets[arr.offset + len(arr)])
        yield memoryview(arr.buffers()[2])[lo:hi]
        return
    for start in range(0, len(lines), block):
        yield lines.slice(start, block).str.join("").item().encode("utf-8")


Piece = str | pl.Expr  # a literal, or a column computed from the rows


def _text_pieces(df: pl.DataFrame, col: str) -> list[Piece]:
    """A text field as pieces of the line, chosen per column: a constant for an all-null or
    single-valued column, length + ":" + text when there is no null, else the general form.
    Same bytes as ``_text``, without building a column per field first."""
    c = df[col]
    if c.null_count() == len(c):
        return ["~"]
    if c.null_count() == 0:
        if c.n_unique() == 1:
            v = c[0]
            return [f"{len(v.encode('utf-8'))}:{v}"]
        return [pl.col(col).str.len_bytes().cast(pl.String), ":", pl.col(col)]
    return [_text(col)]


def _int_pieces(df: pl.DataFrame, col: str) -> list[Piece]:
    return [pl.col(col).cast(pl.String)] if df[col].null_count() == 0 else [_int(col)]


def _lines(df: pl.DataFrame, fields: list[list[Piece]]) -> pl.Series:
    """Every row's line: fields joined by US, then LF, in one concat_str over the pieces."""
    woven: list[pl.Expr] = []
    for i, field in enumerate(fields):
        woven += [pl.lit(p) if isinstance(p, str) else p for p in ([_US] if i else []) + field]
    return df.select(pl.concat_str([*woven, pl.lit("\n")]).alias("line"))["line"]


def fingerprint(table: pa.Table, manifest: Any) -> str:
    """fp2 of a run's rows (every FINGERPRINT_COLUMNS column) under its manifest's identity."""
    df = pl.from_arrow(table.select(FINGERPRINT_COLUMNS))
    assert isinstance(df, pl.DataFrame)
    df = df.sort("request_key")
    df = df.with_columns(_attempts(df), _logprob_bits(df))
    fields: list[list[Piece]] = [
        [pl.col("request_key")], _text_pieces(df, "run_id"), _text_pieces(df, "instrument"),
        _int_pieces(df, "persona_id"), _int_pieces(df, "item_id"), _int_pieces(df, "repetition"),
        _int_pieces(df, "rating"), _int_pieces(df, "failures"), _text_pieces(df, "response"),
        _text_pieces(df, "request"), [pl.col("attempts_fp")], [pl.col("lp_fp")],
        _text_pieces(df, "top_logprobs"), _text_pieces(df, "finish_reason")]
    lines = _lines(df, fields)
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
