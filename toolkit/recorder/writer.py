"""Batched, crash-safe, concurrent-safe appends of recorded rows to one run.

Rows are flushed by count and by time through the store's one segment writer. A flush
writes the segment first, then, under an exclusive lock on the run, re-reads the manifest,
drops rows whose request key another recorder stored meanwhile (first writer wins; the
duplicate answer is discarded and counted), appends the segment and re-derives the
fingerprint, then replaces the manifest atomically. A kill -9 therefore loses at most the
rows not yet flushed, and never leaves a visible half-written file; an unreferenced segment
left by a kill between the two steps is harmless (it is content-addressed and unnamed).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..instrument import Instrument
from ..store import ROW_SCHEMA, RunManifest, Store
from ..store.fingerprint import FINGERPRINT_COLUMNS, FINGERPRINT_VERSION, fingerprint


class RunWriter:
    def __init__(self, store: Store, template: RunManifest, instrument: Instrument, *, flush_rows: int = 1000,
                 flush_seconds: float = 5.0):
        self.store = store
        store.put_instrument(instrument)
        self.template = template
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.pending: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.flush_lock = threading.Lock()
        self.known_segments: list[str] = []
        self.known: pa.Table | None = None  # fingerprint columns of every segment seen so far
        self.duplicates = 0
        self.written = 0
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._timer = threading.Thread(target=self._tick, daemon=True)
        self._timer.start()

    def _tick(self) -> None:
        while not self._stop.wait(min(1.0, self.flush_seconds)):
            if time.monotonic() - self._last >= self.flush_seconds:
                self.flush()

    def add(self, row: dict[str, Any]) -> None:
        with self.lock:
            self.pending.append(row)
            full = len(self.pending) >= self.flush_rows
        if full:
            self.flush()

    def _sync_known(self, manifest: RunManifest) -> None:
        """Bring the in-memory fingerprint columns up to the manifest's segments."""
        names = [s.object for s in manifest.segments]
        if names[: len(self.known_segments)] != self.known_segments:
            self.known_segments, self.known = [], None  # another writer replaced the run: start over
        new = names[len(self.known_segments):]
        tables = [self.store.read_segment(n, FINGERPRINT_COLUMNS) for n in new]
        if self.known is not None:
            tables.insert(0, self.known)
        if tables:
            self.known = pa.concat_tables(tables)
        self.known_segments = names

    def flush(self) -> int:
        with self.flush_lock:
            with self.lock:
                rows, self.pending = self.pending, []
                self._last = time.monotonic()
            if not rows:
                return 0
            table = pa.Table.from_pylist(rows, schema=ROW_SCHEMA)
            run_id = self.template.run_id
            with self.store.run_lock(run_id):
                manifest = self.store.get_run(run_id) or self._fresh_manifest()
                self._sync_known(manifest)
                if self.known is not None and self.known.num_rows:
                    seen = pc.is_in(table["request_key"], value_set=self.known["request_key"])
                    dup = pc.sum(seen).as_py() or 0
                    if dup:
                        self.duplicates += dup
                        table = table.filter(pc.invert(seen))
                if table.num_rows:
                    ref = self.store.write_segment(table)
                    manifest.segments.append(ref)
                    part = table.select(FINGERPRINT_COLUMNS)
                    self.known = part if self.known is None else pa.concat_tables([self.known, part])
                    self.known_segments.append(ref.object)
                    manifest.rows = self.known.num_rows
                    manifest.fingerprint = fingerprint(self.known)
                    manifest.fingerprint_version = FINGERPRINT_VERSION
                    self.store.save_manifest(manifest)
                    self.written += table.num_rows
            return table.num_rows

    def _fresh_manifest(self) -> RunManifest:
        m = self.template
        return RunManifest(run_id=m.run_id, model=m.model, variant=m.variant, temperature=m.temperature, mode=m.mode,
                           instrument=dict(m.instrument), protocol=dict(m.protocol), toolkit_version=m.toolkit_version)

    def close(self) -> None:
        self._stop.set()
        self._timer.join(timeout=5)
        self.flush()


def existing_keys(store: Store, run_id: str) -> set[str]:
    m = store.get_run(run_id)
    if m is None:
        return set()
    return set(store.read_run(m, ["request_key"])["request_key"].to_pylist())
