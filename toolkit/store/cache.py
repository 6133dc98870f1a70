"""The results cache: what an analysis computed from runs, kept in the store beside them.

Why it is safe to keep: an analysis result is a pure function of the runs' rows (named by their
fingerprints), the options and the code. An entry's name is the SHA-256 of exactly that (the
caller's *key material*), so a change to any of them is another name, never a stale hit.

An entry is one file, ``cache/<k[:2]>/<k>.entry``::

    toolkit-cache/1 LF
    header (canonical JSON: key, kind, runs, meta, payload_sha256, payload_bytes) LF
    payload bytes

``runs`` are the fingerprints of the runs the result was computed from: ``prune`` removes an
entry once any of them is no longer a run of the store (``compact``). Entries are written
atomically (temp file, fsync, rename) and checked on every read: the header must name the
file's key and the payload must match its SHA-256; a damaged entry is a miss (and is
rewritten), never a number.

The cache is an accelerator, not a store of record: a store that cannot be written (a bundle
opened read-only, the installed demo store, a read-only disk) is analyzed without one, and
``toolkit verify`` recomputes every entry.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ToolkitError
from ..hashing import canonical_json, sha256_bytes, sha256_text
from .atomic import TMP_PREFIX, atomic_write_bytes, atomic_write_many
from .manifest import DIGEST_RE

MAGIC = b"toolkit-cache/1\n"
SUFFIX = ".entry"
# What a bundle may carry: the kinds `toolkit verify` recomputes (analysis/cache.py), so that no
# result a reviewer is handed escapes that check.
CARRIED_KINDS = frozenset({"analyze/1"})


@dataclass(frozen=True)
class Entry:
    key: str
    kind: str
    runs: tuple[str, ...]  # fingerprints of the runs it was computed from
    meta: dict[str, Any]
    payload: bytes


def cache_key(material: Any) -> str:
    """The entry name of some key material (canonical JSON of it, hashed)."""
    return sha256_text("toolkit-cache-key\n" + canonical_json(material))


def encode(entry: Entry) -> bytes:
    header = {"key": entry.key, "kind": entry.kind, "runs": list(entry.runs), "meta": entry.meta,
              "payload_sha256": sha256_bytes(entry.payload), "payload_bytes": len(entry.payload)}
    return MAGIC + canonical_json(header).encode("utf-8") + b"\n" + entry.payload


def decode(data: bytes, key: str | None = None) -> Entry:
    """An entry from its file bytes, every check made; ValueError says what is wrong."""
    if not data.startswith(MAGIC):
        raise ValueError("not a toolkit cache entry")
    end = data.find(b"\n", len(MAGIC))
    if end < 0:
        raise ValueError("the header is cut short")
    header = json.loads(data[len(MAGIC):end].decode("utf-8"))
    payload = data[end + 1:]
    if not isinstance(header, dict) or not isinstance(header.get("runs"), list) \
            or not isinstance(header.get("meta"), dict) or not isinstance(header.get("kind"), str) \
            or not isinstance(header.get("key"), str):
        raise ValueError("the header is malformed")
    if key is not None and header.get("key") != key:
        raise ValueError("the header names another key than the file")
    if header.get("payload_bytes") != len(payload) or header.get("payload_sha256") != sha256_bytes(payload):
        raise ValueError("the payload does not match its SHA-256")
    return Entry(header["key"], header["kind"], tuple(map(str, header["runs"])), header["meta"], payload)


class ResultCache:
    """The ``cache/`` folder of a store."""

    def __init__(self, root: Path):
        self.dir = Path(root) / "cache"

    def path(self, key: str) -> Path:
        if not DIGEST_RE.match(key):  # never a path outside cache/
            raise ValueError(f"{key!r} is not a cache key")
        return self.dir / key[:2] / f"{key}{SUFFIX}"

    def get(self, key: str) -> Entry | None:
        """The entry under ``key``, checked; None when there is none or it is damaged."""
        try:
            return decode(self.path(key).read_bytes(), key)
        except (OSError, ValueError, UnicodeDecodeError):
            return None

    def put(self, entry: Entry) -> bool:
        """Write an entry (replacing a damaged one); False when the store cannot be written,
        which only costs the next analysis its speed."""
        try:
            atomic_write_bytes(self.path(entry.key), encode(entry))
            return True
        except (OSError, ToolkitError):
            return False

    def put_many(self, entries: list[Entry]) -> bool:
        """``put`` for many entries at once (one sync for all: atomic.atomic_write_many)."""
        try:
            atomic_write_many([(self.path(e.key), encode(e)) for e in entries])
            return True
        except (OSError, ToolkitError):
            return False

    def files(self) -> Iterator[Path]:
        if self.dir.is_dir():
            for path in sorted(self.dir.glob(f"*/*{SUFFIX}")):
                if not path.name.startswith(TMP_PREFIX):
                    yield path

    def entries(self) -> Iterator[tuple[Path, Entry | None]]:
        """Every entry file with its entry, or None for a damaged one."""
        for path in self.files():
            try:
                yield path, decode(path.read_bytes(), path.name.removesuffix(SUFFIX))
            except (OSError, ValueError, UnicodeDecodeError):
                yield path, None

    def prune(self, live: set[str], code: str | None = None) -> int:
        """Remove entries computed from a run that is no longer in the store (fingerprints
        ``live``), by other code than ``code`` (their ``meta["code"]``: no key of this code
        reaches them), and damaged ones; the number removed."""
        removed = 0
        for path, entry in list(self.entries()):
            if entry is None or not set(entry.runs) <= live or (code is not None and entry.meta.get("code") != code):
                path.unlink(missing_ok=True)
                removed += 1
                try:
                    path.parent.rmdir()
                except OSError:
                    pass
        return removed
