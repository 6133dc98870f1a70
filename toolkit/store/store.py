"""The content-addressed store: segments, instruments and run manifests on disk.

Layout (docs/store-format.md)::

    <store>/objects/ab/abcdef....parquet   immutable row segments, named by SHA-256 of bytes
    <store>/instruments/<digest>.json      instrument files, named by their digest
    <store>/runs/<quoted run_id>.json      run manifests (the only mutable files)

The store knows rows, segments and manifests; it knows nothing of S or R.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import StoreCorrupt, ToolkitError
from ..hashing import canonical_json, sha256_bytes, sha256_text
from ..instrument import Instrument, parse_instrument
from .atomic import TMP_PREFIX, atomic_write_bytes
from .fingerprint import FINGERPRINT_COLUMNS, FINGERPRINT_VERSION, fingerprint
from .manifest import RunManifest, SegmentRef, manifest_filename
from .schema import ROW_SCHEMA

ENV_VAR = "TOOLKIT_STORE"
DEFAULT_DIRNAME = "parquet"
# Low-cardinality columns only: dictionary-encoding random keys costs time and space.
DICTIONARY_COLUMNS = ["run_id", "instrument", "provenance", "response", "finish_reason", "collected_at"]


def default_store_path() -> Path:
    """``$TOOLKIT_STORE``, else ``parquet/`` next to cli.py (the embedded store)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / DEFAULT_DIRNAME


@dataclass(frozen=True)
class Problem:
    """One integrity problem found by ``verify``; ``obj`` names the damaged object."""

    obj: str
    message: str

    def __str__(self) -> str:
        return f"{self.obj}: {self.message}"


class Store:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_store_path()

    # ----- paths -------------------------------------------------------------------------
    @property
    def objects_dir(self) -> Path:
        return self.root / "objects"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def instruments_dir(self) -> Path:
        return self.root / "instruments"

    def object_path(self, digest: str) -> Path:
        return self.objects_dir / digest[:2] / f"{digest}.parquet"

    def manifest_path(self, run_id: str) -> Path:
        return self.runs_dir / manifest_filename(run_id)

    # ----- segments ----------------------------------------------------------------------
    @staticmethod
    def encode_segment(table: pa.Table) -> bytes:
        table = table.cast(ROW_SCHEMA)
        buf = io.BytesIO()
        pq.write_table(
            table,
            buf,
            compression="zstd",
            compression_level=1,
            use_dictionary=DICTIONARY_COLUMNS,
            row_group_size=1 << 20,
        )
        return buf.getvalue()

    def write_segment(self, table: pa.Table) -> SegmentRef:
        """Write rows as one immutable segment; an identical segment is stored once."""
        data = self.encode_segment(table)
        digest = sha256_bytes(data)
        path = self.object_path(digest)
        if not path.exists():
            atomic_write_bytes(path, data, exclusive=True)
        return SegmentRef(object=digest, rows=table.num_rows, bytes=len(data))

    def read_segment(self, digest: str, columns: list[str] | None = None) -> pa.Table:
        path = self.object_path(digest)
        if not path.exists():
            raise ToolkitError(f"segment {digest} is missing from the store (run `verify`)", path=str(path))
        return pq.read_table(path, columns=columns)

    # ----- instruments -------------------------------------------------------------------
    def put_instrument(self, instrument: Instrument) -> None:
        path = self.instruments_dir / f"{instrument.digest}.json"
        if not path.exists():
            atomic_write_bytes(path, (canonical_json(instrument.raw) + "\n").encode("utf-8"), exclusive=True)

    def instrument(self, digest: str) -> Instrument:
        path = self.instruments_dir / f"{digest}.json"
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ToolkitError(f"instrument {digest} is missing from the store", path=str(path)) from None
        return parse_instrument(raw, str(path))

    # ----- manifests ---------------------------------------------------------------------
    def _manifest_files(self) -> list[Path]:
        if not self.runs_dir.is_dir():
            return []
        return sorted(p for p in self.runs_dir.glob("*.json") if not p.name.startswith(TMP_PREFIX))

    def runs(self) -> list[RunManifest]:
        """All run manifests, sorted by run id."""
        out = [self._load_manifest(p) for p in self._manifest_files()]
        return sorted(out, key=lambda m: m.run_id)

    def _load_manifest(self, path: Path) -> RunManifest:
        try:
            return RunManifest.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as exc:
            raise ToolkitError(f"unreadable run manifest: {exc}", path=str(path)) from None

    def get_run(self, run_id: str) -> RunManifest | None:
        path = self.manifest_path(run_id)
        return self._load_manifest(path) if path.exists() else None

    def save_manifest(self, manifest: RunManifest) -> None:
        atomic_write_bytes(self.manifest_path(manifest.run_id), manifest.to_json().encode("utf-8"))

    def read_run(self, run: RunManifest | str, columns: list[str] | None = None) -> pa.Table:
        manifest = run if isinstance(run, RunManifest) else self.get_run(run)
        if manifest is None:
            raise ToolkitError(f"no run {run!r} in store {self.root}")
        tables = [self.read_segment(s.object, columns) for s in manifest.segments]
        if not tables:
            schema = ROW_SCHEMA if columns is None else pa.schema([ROW_SCHEMA.field(c) for c in columns])
            return schema.empty_table()
        return pa.concat_tables(tables)

    def commit_run(self, manifest: RunManifest, tables: Iterable[pa.Table]) -> RunManifest:
        """Write segments, then the manifest naming them (manifest last: readers never see a
        manifest whose segments are not all on disk)."""
        fresh = not manifest.segments
        written = []
        for table in tables:
            if table.num_rows:
                manifest.segments.append(self.write_segment(table))
                written.append(table)
        if fresh and written:  # the rows are all in memory: no need to read them back
            full = pa.concat_tables(written)
        else:
            full = self.read_run(manifest, FINGERPRINT_COLUMNS)
        manifest.rows = full.num_rows
        manifest.fingerprint = fingerprint(full)
        manifest.fingerprint_version = FINGERPRINT_VERSION
        self.save_manifest(manifest)
        return manifest

    @contextmanager
    def run_lock(self, run_id: str) -> Iterator[None]:
        """Exclusive lock on one run's manifest (released by the kernel even on kill -9)."""
        lock_dir = self.root / "locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        with open(lock_dir / (manifest_filename(run_id) + ".lock"), "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def compact(self, run_id: str) -> RunManifest:
        """Rewrite a run's segments as one; the logical fingerprint must not change."""
        with self.run_lock(run_id):
            m = self.get_run(run_id)
            if m is None:
                raise ToolkitError(f"no run {run_id!r} in store {self.root}")
            table = self.read_run(m).sort_by([("persona_id", "ascending"), ("item_id", "ascending"),
                                               ("repetition", "ascending")])
            before = m.fingerprint
            m.segments = [self.write_segment(table)] if table.num_rows else []
            if fingerprint(table) != before:
                raise StoreCorrupt(f"run {run_id}: fingerprint changed on compaction (run verify)")
            self.save_manifest(m)
            return m

    def gc(self, grace_seconds: float = 3600.0) -> list[str]:
        """Delete objects no manifest names, older than ``grace_seconds`` (a recorder writes its
        segment a moment before naming it in the manifest; the grace keeps those)."""
        named = {s.object for m in self.runs() for s in m.segments}
        removed = []
        now = time.time()
        for path in sorted(self.objects_dir.glob("*/*.parquet")) if self.objects_dir.is_dir() else []:
            if path.stem not in named and now - path.stat().st_mtime >= grace_seconds:
                path.unlink()
                removed.append(path.stem)
        return removed

    # ----- integrity ---------------------------------------------------------------------
    def verify(self) -> list[Problem]:
        """Trust nothing: re-hash every object, re-derive every fingerprint and request key."""
        problems: list[Problem] = []
        if not self.root.is_dir():
            return [Problem(str(self.root), "store folder does not exist")]
        damaged: set[str] = set()  # every object is hashed once, here; manifests reuse the verdict
        for path in sorted(self.objects_dir.glob("*/*.parquet")) if self.objects_dir.is_dir() else []:
            digest = path.stem
            if path.parent.name != digest[:2]:
                problems.append(Problem(f"object {digest}", "stored under the wrong prefix folder"))
            if sha256_bytes(path.read_bytes()) != digest:
                damaged.add(digest)
                problems.append(Problem(f"object {digest}", "content does not match its SHA-256 name"))
        for path in sorted(self.instruments_dir.glob("*.json")) if self.instruments_dir.is_dir() else []:
            if path.name.startswith(TMP_PREFIX):
                continue
            try:
                text = json.loads(path.read_text(encoding="utf-8"))
                ok = sha256_text(canonical_json(text)) == path.stem
            except (ValueError, UnicodeDecodeError):
                ok = False
            if not ok:
                problems.append(Problem(f"instrument {path.stem}", "content does not match its digest"))
        for path in self._manifest_files():
            problems.extend(self._verify_manifest(path, damaged))
        return problems

    def _verify_manifest(self, path: Path, damaged: set[str]) -> list[Problem]:
        try:
            m = RunManifest.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            return [Problem(f"manifest {path.name}", f"unreadable: {exc}")]
        name = f"run {m.run_id}"
        out: list[Problem] = []
        if path.name != manifest_filename(m.run_id):
            out.append(Problem(name, f"manifest file name {path.name} does not match its run id"))
        if not (self.instruments_dir / f"{m.instrument.get('digest')}.json").exists():
            out.append(Problem(name, f"instrument {m.instrument.get('digest')} is missing"))
        tables = []
        for seg in m.segments:
            opath = self.object_path(seg.object)
            if not opath.exists():
                out.append(Problem(name, f"segment {seg.object} is missing"))
                continue
            if seg.object in damaged:
                out.append(Problem(name, f"segment {seg.object} is damaged"))
                continue
            try:
                t = pq.read_table(opath)
            except Exception as exc:
                out.append(Problem(name, f"segment {seg.object} cannot be read: {exc}"))
                continue
            if t.num_rows != seg.rows:
                out.append(Problem(name, f"segment {seg.object} has {t.num_rows} rows, manifest says {seg.rows}"))
            tables.append(t)
        if out:
            return out
        table = pa.concat_tables(tables) if tables else ROW_SCHEMA.empty_table()
        if table.num_rows != m.rows:
            out.append(Problem(name, f"has {table.num_rows} rows, manifest says {m.rows}"))
        bad_run = pa.compute.sum(pa.compute.not_equal(table["run_id"], m.run_id)).as_py() or 0
        if bad_run:
            out.append(Problem(name, f"{bad_run} rows carry another run id"))
        keys = table["request_key"].to_pylist()
        requests = table["request"].to_pylist()
        bad = sum(1 for k, r in zip(keys, requests) if sha256_text(r) != k)
        if bad:
            out.append(Problem(name, f"{bad} rows have a request key that does not match their request"))
        if len(set(keys)) != len(keys):
            out.append(Problem(name, "duplicate request keys"))
        if fingerprint(table) != m.fingerprint:
            out.append(Problem(name, "logical fingerprint does not match the manifest"))
        return out
