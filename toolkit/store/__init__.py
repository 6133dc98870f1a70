"""Content-addressed Parquet store (segments + manifests). Knows nothing of S or R."""

from .manifest import MODES, RunManifest, SegmentRef, make_run_id
from .schema import ROW_SCHEMA
from .store import Problem, Store, default_store_path

__all__ = ["MODES", "ROW_SCHEMA", "Problem", "RunManifest", "SegmentRef", "Store", "default_store_path", "make_run_id"]
