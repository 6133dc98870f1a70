"""The Arrow schema of one stored completion (one row per slot), and the versions read.

Documented field by field in docs/store-format.md; change both together and bump
``SCHEMA_VERSION``. Readers dispatch on the version each segment carries in its metadata, so
stores written by older releases keep loading: ``to_current`` turns any supported version
into the current in-memory form (request keys as 64-character hex text).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

SCHEMA_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
# Added in version 3: what the server reported the slot's requests cost, summed over every
# attempt of the slot (failed ones are paid for too); null when it did not say, and in every
# row of an older segment.
TOKEN_COLUMNS = ("prompt_tokens", "completion_tokens", "cached_tokens")
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
        *(pa.field(name, pa.int64()) for name in TOKEN_COLUMNS),  # version 3
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


def hex_keys_to_bytes(keys: pa.Array | pa.ChunkedArray) -> pa.FixedSizeBinaryArray:
    """64-character lowercase hex keys -> their 32 raw bytes; ValueError for anything else.

    Vectorised over the keys' character buffer: with every key 64 bytes long, the characters
    are one (n, 64) array; a digit maps to c - 48, a letter a-f to c - 87, and a character
    maps to a nibble >= 10 exactly when it is a letter, which rejects everything else."""
    arr = keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys
    arr = arr.cast(pa.large_string())
    n = len(arr)
    bad = ValueError("request keys must be 64 lowercase hex digits")
    if n == 0:
        return pa.array([], type=pa.binary(32))
    if arr.null_count:
        raise bad
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + n + 1]
    if not (np.diff(offsets) == 64).all():
        raise bad
    chars = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    letter = chars >= 97
    nib = chars - np.uint8(48)
    nib -= letter.view(np.uint8) * np.uint8(39)
    if not ((nib < 16).all() and np.array_equal(nib >= 10, letter)):
        raise bad
    raw = (nib[0::2] << 4) | nib[1::2]
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(32), n, [None, pa.py_buffer(raw)])


def to_disk(table: pa.Table) -> pa.Table:
    """In-memory rows -> the current on-disk layout (hex keys become raw bytes)."""
    table = table.cast(ROW_SCHEMA)
    raw = hex_keys_to_bytes(table["request_key"])
    i = table.schema.get_field_index("request_key")
    return table.set_column(i, DISK_SCHEMA.field("request_key"), raw).cast(DISK_SCHEMA)


def columns_on_disk(version: int, wanted: list[str] | None) -> list[str] | None:
    """The columns to read from a segment of ``version``: what it has of ``wanted``."""
    if version >= 3:
        return wanted
    have = [c for c in ROW_SCHEMA.names if c not in TOKEN_COLUMNS]
    return [c for c in (wanted or ROW_SCHEMA.names) if c in have]


def to_current(table: pa.Table, version: int, wanted: list[str] | None = None) -> pa.Table:
    """Rows read from a segment of any supported version -> the in-memory form, with the
    ``wanted`` columns (default all) in that order; a column a version lacks is null."""
    if version not in READABLE_VERSIONS:
        raise ValueError(f"segment schema version {version} is not one this release reads {READABLE_VERSIONS}")
    if version < 3:
        for name in TOKEN_COLUMNS:
            if (wanted is None or name in wanted) and name not in table.column_names:
                table = table.append_column(ROW_SCHEMA.field(name), pa.nulls(table.num_rows, pa.int64()))
        if wanted is not None:
            table = table.select(wanted)
    if version >= 2 and "request_key" in table.column_names:
        i = table.schema.get_field_index("request_key")
        import polars as pl  # here, not at the top: analysis workers read the store without polars

        raw = table["request_key"].combine_chunks().cast(pa.binary())
        hexed = pl.Series(raw).bin.encode("hex").to_arrow().cast(pa.string())
        table = table.set_column(i, pa.field("request_key", pa.string(), nullable=False), hexed)
    for field in table.schema:  # every reader's columns have the format's types, or nothing is read
        kind = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
        want = ROW_SCHEMA.field(field.name).type if field.name in ROW_SCHEMA.names else kind
        if kind != want:
            raise ValueError(f"column {field.name} holds {kind}, the row format says {want}")
    return table
