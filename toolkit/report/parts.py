"""Parts of a report kept in the store's results cache (store/cache.py): a figure, or one run's
pages, is a pure function of what it is drawn from, so a second report of an unchanged store
copies them instead of drawing every figure and rendering every persona page again.

A part's key holds its inputs (frames by a SHA-256 of their values, ``frame_digest``: two
frames that differ in any bit never share a key, and equal ones always do), the code
(toolkit version and source digest) and, for figures, the matplotlib version and the
resolution. Its entry records the fingerprints of
the runs it shows, so `compact` drops it with them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from importlib import metadata
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from .. import __version__
from ..analysis.cache import code_digest, decode_frame, encode_frame
from ..analysis.result import Result
from ..errors import ToolkitError
from ..store import RunManifest, Store
from ..store.cache import Entry, ResultCache, cache_key

KIND = "report-part/1"


def frame_digest(frame: pl.DataFrame) -> str:
    """SHA-256 of a frame's values, whatever its memory layout (a slice, a decoded copy):
    the schema, each column's null mask, numeric values as their bytes (every bit), anything
    else by Python's repr of its values (exact for strings and floats)."""
    h = hashlib.sha256(repr(frame.schema).encode("utf-8"))
    for col in frame.get_columns():
        h.update(b"\x1e" + col.name.encode("utf-8") + b"\x1f" + col.is_null().to_numpy().tobytes())
        if col.dtype.is_numeric():
            h.update(np.ascontiguousarray(col.to_numpy()).tobytes())
        else:
            h.update(repr(col.to_list()).encode("utf-8"))
    return h.hexdigest()


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
    """Cached report parts of one store (reads with ``use``; writes where the store keeps results).
    A hit is used only after the SHA-256 of every segment of the runs it shows is checked, as
    for `analyze` (analysis/cache.py): a damaged run fails the report as it would without it."""

    def __init__(self, store: Store, use: bool):
        self.store = store
        self.cache = ResultCache(store.root)
        self.use = use
        self.write = use and store.keeps_results
        self.intact: dict[str, bool] = {}

    def _hit(self, what: Any, runs: list[RunManifest]) -> tuple[str, Entry | None]:
        key = cache_key({"kind": KIND, "version": __version__, "code": code_digest(), "part": material_of(what)})
        entry = self.cache.get(key)
        if entry is None or entry.kind != KIND or not all(self._intact(m) for m in runs):
            return key, None
        return key, entry

    def _intact(self, m: RunManifest) -> bool:
        if m.run_id not in self.intact:
            try:
                self.store.check_bytes(m)
                self.intact[m.run_id] = True
            except ToolkitError:
                self.intact[m.run_id] = False
        return self.intact[m.run_id]

    def _keep(self, key: str, runs: list[RunManifest], meta: dict[str, Any], payload: bytes) -> None:
        if self.write:
            self.cache.put(Entry(key, KIND, tuple(sorted({m.fingerprint for m in runs})),
                                 {"code": code_digest(), **meta}, payload))

    def get(self, what: Any, runs: list[RunManifest], make: Callable[[], dict[str, bytes]]) -> dict[str, bytes]:
        """The files of a part: from the cache, or made (and kept)."""
        if not self.use or not all(m.fingerprint for m in runs):
            return make()
        key, entry = self._hit(what, runs)
        if entry is not None:
            try:
                return unpack(entry.payload)
            except (ValueError, TypeError):
                pass
        files = make()
        self._keep(key, runs, {}, pack(files))
        return files

    def result(self, what: Any, runs: list[RunManifest], make: Callable[[], Result]) -> Result:
        """An analysis' frame and the runs it left out, computed from ``runs`` (the store's
        runs: over-wide, so that no run it reads can change unseen): from the cache, or made."""
        if not self.use or not all(m.fingerprint for m in runs):
            return make()
        key, entry = self._hit(what, runs)
        if entry is not None:
            try:
                return Result(decode_frame(entry.payload), tuple(entry.meta["skipped"]), tuple(entry.meta["notes"]))
            except (KeyError, TypeError, ValueError, pa.ArrowException):
                pass
        made = make()
        self._keep(key, runs, {"skipped": list(made.skipped), "notes": list(made.notes)}, encode_frame(made.frame))
        return made
