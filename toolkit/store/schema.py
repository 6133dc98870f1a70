"""The Arrow schema of one stored completion (one row per slot), and the versions read.

Documented field by field in docs/store-format.md; change both together and bump
``SCHEMA_VERSION``. Readers dispatch on the version each segment carries in its metadata, so
stores written by older releases keep loading: ``to_current`` turns any supported version
into the current in-memory form (request keys as 64-character hex text).
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
VERSION_KEY = b"toolkit.schema_version"


def _fields(request_key_type: pa.DataType) -> list[pa.Field]:
    return [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("instrument", pa.string(), nullable=False),  # instrument digest
        pa.field("persona_id", pa.int32()),  # null for self runs
        pa.field("item_id", pa.int32(), nullable=False),
        pa.field("repetition", pa.int32(), nullable=False),
        pa.field("request_key", request_key_type, nullable=False),
        pa.field("request", pa.string(), nullable=False),  # canonical JSON
        pa.field("response", pa.string()),
        pa.field("rating", pa.int16(), nullable=False),  # -1 = no valid rating
        pa.field("failures", pa.int16(), nullable=False),
        pa.field("attempts", pa.list_(pa.string())),  # raw text of every failed attempt
        pa.field("digit_logprobs", pa.list_(pa.float64())),  # one per scale point, null = not in top-k
        pa.field("top_logprobs", pa.string()),  # raw top-k list as JSON, when known
        pa.field("finish_reason", pa.string()),
        pa.field("latency_s", pa.float64()),
        pa.field("collected_at", pa.string()),  # ISO-8601 as the source gave it
        pa.field("provenance", pa.string(), nullable=False),
        pa.field("source_line", pa.int64()),  # line in the imported file, null when recorded
    ]


# In memory every version looks like this: request keys as hex text, the form they are
# compared, printed and planned in.
ROW_SCHEMA = pa.schema(_fields(pa.string()))
# On disk, version 2: the key as its 32 raw bytes (as hex text it was 3/4 of a store's bytes).
DISK_SCHEMA = pa.schema(_fields(pa.binary(32)), metadata={VERSION_KEY: str(SCHEMA_VERSION).encode()})

COLUMNS = ROW_SCHEMA.names


def version_of(schema: pa.Schema) -> int:
    raw = (schema.metadata or {}).get(VERSION_KEY)
    try:
        return int(raw) if raw is not None else 0
    except ValueError:
        return 0


def to_disk(table: pa.Table) -> pa.Table:
    """In-memory rows -> the current on-disk layout (hex keys become raw bytes)."""
    table = table.cast(ROW_SCHEMA)
    keys = table["request_key"].combine_chunks()
    if len(keys) and not pc.all(pc.match_substring_regex(keys, r"^[0-9a-f]{64}$")).as_py():
        raise ValueError("request keys must be 64 lowercase hex digits")
    raw = pl.Series(keys).str.decode("hex").to_arrow().cast(pa.binary(32))
    i = table.schema.get_field_index("request_key")
    return table.set_column(i, DISK_SCHEMA.field("request_key"), raw).cast(DISK_SCHEMA)


def to_current(table: pa.Table, version: int) -> pa.Table:
    """Rows read from a segment of any supported version -> the in-memory form."""
    if version not in READABLE_VERSIONS:
        raise ValueError(f"segment schema version {version} is not one this release reads {READABLE_VERSIONS}")
    if version >= 2 and "request_key" in table.column_names:
        i = table.schema.get_field_index("request_key")
        raw = table["request_key"].combine_chunks().cast(pa.binary())
        hexed = pl.Series(raw).bin.encode("hex").to_arrow().cast(pa.string())
        table = table.set_column(i, pa.field("request_key", pa.string(), nullable=False), hexed)
    return table
