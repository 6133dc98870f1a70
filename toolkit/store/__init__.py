"""Content-addressed Parquet store (segments + manifests). Knows nothing of S or R.

The names below load on first use (PEP 562): importing ``toolkit.store.manifest`` for its
constants, as the command line does to build its options, must not import pyarrow (most of a
cold ``--help``)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .manifest import MODES, RunManifest, SegmentRef, make_run_id
    from .query import EVERY_RUN, Selection
    from .schema import ROW_SCHEMA
    from .store import Problem, Store, default_store_path, open_store

__all__ = ["EVERY_RUN", "MODES", "ROW_SCHEMA", "Problem", "RunManifest", "SegmentRef", "Selection", "Store",
           "default_store_path", "make_run_id", "open_store"]

_HOME = {"MODES": "manifest", "RunManifest": "manifest", "SegmentRef": "manifest", "make_run_id": "manifest",
         "EVERY_RUN": "query", "Selection": "query", "ROW_SCHEMA": "schema", "Problem": "store", "Store": "store",
         "default_store_path": "store", "open_store": "store"}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    globals()[name] = value
    return value
