"""Parts of a report kept in the store's results cache (store/cache.py): a figure, or one run's
pages, is a pure function of what it is drawn from, so a second report of an unchanged store
copies them instead of drawing every figure and rendering every persona page again.

A part's key holds its inputs (frames by a SHA-256 of their values, ``cache.frame_digest``: two
frames that differ in any bit never share a key, and equal ones always do), the code
(toolkit version and source digest), the fingerprints of the runs it shows (so `compact` drops
it with them) and, for figures, the matplotlib version and the resolution.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import metadata
from typing import Any

from ..analysis.cache import Memo
from ..store import RunManifest, Store

KIND = "report-part/1"


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


class Parts(Memo):
    """Cached report parts: ``Memo`` results, and a part's files (``get``)."""

    def __init__(self, store: Store, use: bool):
        super().__init__(store, use, KIND)

    def get(self, what: Any, runs: list[RunManifest], make: Callable[[], dict[str, bytes]]) -> dict[str, bytes]:
        """The files of a part: from the cache, or made (and kept)."""
        if not self.usable(runs):
            return make()
        key, entry = self.hit(what, runs)
        if entry is not None:
            try:
                return unpack(entry.payload)
            except (ValueError, TypeError):
                pass
        files = make()
        self.keep(key, runs, {}, pack(files))
        return files
