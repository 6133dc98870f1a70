"""Canonical JSON and SHA-256: the one way identities are computed.

Request keys, instrument digests and file digests must be identical on every machine and in
every code path (recorder, importer, verify), so they all go through these three functions.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys, no insignificant whitespace, UTF-8 kept as is.

    Floats use Python's shortest round-trip repr, which is stable across platforms.
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def request_key(request: dict[str, Any]) -> tuple[str, str]:
    """Return ``(key, canonical_request)`` for a request description."""
    text = canonical_json(request)
    return sha256_text(text), text


def request_keys(requests: Any) -> Any:
    """``request_key`` of many canonical request texts at once (a polars String Series in, the
    hex keys out): the same SHA-256 of the UTF-8 text as ``request_key``, for importers."""
    import polars as pl

    return pl.Series("request_key", list(map(sha256_text, requests.to_list())), dtype=pl.String)


def parse_json(text: str | bytes) -> Any:
    """``json.loads`` for input from outside (files, rows, replies): nesting too deep for the
    parser is a ValueError like any other malformed JSON, so every caller's one-line error
    covers it (a RecursionError would end the command as an internal error)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
