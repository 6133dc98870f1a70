"""Logical fingerprint of a run: a digest of *what was answered*, not of how it was stored.

Definition (version ``fp1``, see docs/store-format.md): sort the rows by request key; for
each row form the line

    request_key US rating US failures US <len(response) in UTF-8 bytes>:<response> US logprobs LF

(US = 0x1F; a null response is written ``~``; logprobs are the digit log-probabilities as
shortest round-trip decimal strings joined by ``,`` with ``~`` for a missing digit, or ``~``
when the row has none), then SHA-256 the UTF-8 concatenation of all lines. Segment
boundaries, row order, compression and the Parquet writer version cannot change it.
"""

from __future__ import annotations

import hashlib

import polars as pl
import pyarrow as pa

FINGERPRINT_VERSION = "fp1"
_US = "\x1f"
FINGERPRINT_COLUMNS = ["request_key", "rating", "failures", "response", "digit_logprobs"]


def _logprob_text(values: list[float | None] | None) -> str:
    if values is None:
        return "~"
    return ",".join("~" if v is None else repr(float(v)) for v in values)


def fingerprint(table: pa.Table) -> str:
    df = pl.from_arrow(table.select(FINGERPRINT_COLUMNS))
    assert isinstance(df, pl.DataFrame)
    df = df.sort("request_key")
    lp = df["digit_logprobs"]
    if lp.null_count() == len(lp):
        lp_text = pl.repeat("~", len(df), dtype=pl.String, eager=True).alias("lp")
    else:
        lp_text = pl.Series("lp", [_logprob_text(v) for v in lp.to_list()], dtype=pl.String)
    resp = pl.col("response")
    resp_enc = (
        pl.when(resp.is_null())
        .then(pl.lit("~"))
        .otherwise(pl.concat_str([resp.str.len_bytes().cast(pl.String), pl.lit(":"), resp]))
    )
    lines = df.with_columns(lp_text).select(
        pl.concat_str(
            [
                pl.col("request_key"),
                pl.lit(_US),
                pl.col("rating").cast(pl.String),
                pl.lit(_US),
                pl.col("failures").cast(pl.String),
                pl.lit(_US),
                resp_enc,
                pl.lit(_US),
                pl.col("lp"),
                pl.lit("\n"),
            ]
        ).alias("line")
    )
    h = hashlib.sha256()
    for chunk in _joined(lines["line"]):
        h.update(chunk.encode("utf-8"))
    return h.hexdigest()


def _joined(lines: pl.Series, block: int = 65536):
    """Join lines in blocks so hashing stays vectorised without one huge Python string per row."""
    for start in range(0, len(lines), block):
        yield lines.slice(start, block).str.join("").item()
