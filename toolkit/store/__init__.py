"""Content-addressed Parquet store (segments + manifests). Knows nothing of S or R."""

from .manifest import MODES, RunManifest, SegmentRef, make_run_id
from .query import EVERY_RUN, Selection
from .schema import ROW_SCHEMA
from .store import Problem, Store, default_store_path, open_store

__all__ = ["EVERY_RUN", "MODES", "ROW_SCHEMA", "Problem", "RunManifest", "SegmentRef", "Selection", "Store",
           "default_store_path", "make_run_id", "open_store"]
