"""The Arrow schema of one stored completion (one row per slot).

Documented field by field in docs/store-format.md; change both together and bump
``SCHEMA_VERSION``.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 1

ROW_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("instrument", pa.string(), nullable=False),  # instrument digest
        pa.field("persona_id", pa.int32()),  # null for self runs
        pa.field("item_id", pa.int32(), nullable=False),
        pa.field("repetition", pa.int32(), nullable=False),
        pa.field("request_key", pa.string(), nullable=False),
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
    ],
    metadata={b"toolkit.schema_version": str(SCHEMA_VERSION).encode()},
)

COLUMNS = ROW_SCHEMA.names
