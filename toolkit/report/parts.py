"""Parts of a report kept in the store's results cache (store/cache.py): a figure, or one run's
pages, is a pure function of what it is drawn from, so a second report of an unchanged store
copies them instead of drawing every figure and rendering every persona page again.

A part's key holds its inputs (frames by the SHA-256 of their Arrow IPC bytes, so two frames
that differ in any bit never share a key), the code (toolkit version and source digest) and,
for figures, the matplotlib version and the resolution. Its entry records the fingerprints of
the runs it shows, so `compact` drops it with them.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from importlib import metadata
from typing import Any

import polars as pl

from .. import __version__
from ..analysis.cache import code_digest
from ..hashing import sha256_bytes
from ..store import RunManifest, Store
from ..store.cache import Entry, ResultCache, cache_key

KIND = "report-part/1"


def frame_digest(frame: pl.DataFrame) -> str:
    sink = io.BytesIO()
    frame.write_ipc(sink, compression="uncompressed")
    return sha256_bytes(sink.getvalue())


def material_of(value: Any) -> Any:
    """A key's view of an input: frames by digest, containers item by item, the rest as is."""
    if isinstance(value, pl.DataFrame):
        return {"frame": frame_digest(value)}
    if isinstance(value, dict):
        return {str(k): material_of(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [material_of(v) for v in value]
    return value


def pack(files: dict[str, bytes]) -> bytes:
    names = sorted(files)
    header = json.dumps([[n, len(files[n])] for n in names]).encode("utf-8")
    return header + b"\n" + b"".join(files[n] for n in names)


def unpack(data: bytes) -> dict[str, bytes]:
    end = data.index(b"\n")
    out, at = {}, end + 1
    for name, size in json.loads(data[:end]):
        out[str(name)] = data[at : at + int(size)]
        at += int(size)
    if at != len(data):
        raise ValueError("the files do not add up to the entry")
    return out


def matplotlib_version() -> str:
    try:
        return metadata.version("matplotlib")
    except metadata.PackageNotFoundError:
        return ""


class Parts:
    """Cached report parts of one store (reads with ``use``; writes where the store keeps results)."""

    def __init__(self, store: Store, use: bool):
        self.cache = ResultCache(store.root)
        self.use = use
        self.write = use and store.keeps_results

    def get(self, what: Any, runs: list[RunManifest], make: Callable[[], dict[str, bytes]]) -> dict[str, bytes]:
        """The files of a part: from the cache, or made (and kept)."""
        if not self.use or not all(m.fingerprint for m in runs):
            return make()
        key = cache_key({"kind": KIND, "version": __version__, "code": code_digest(), "part": material_of(what)})
        entry = self.cache.get(key)
        if entry is not None and entry.kind == KIND:
            try:
                return unpack(entry.payload)
            except (ValueError, TypeError):
                pass
        files = make()
        if self.write:
            self.cache.put(Entry(key, KIND, tuple(sorted({m.fingerprint for m in runs})), {"code": code_digest()},
                                 pack(files)))
        return files
