"""Batched, crash-safe, concurrent-safe appends of recorded rows to one run.

Rows are flushed by count and by time through the store's one segment writer. A flush
encodes the pending rows, writes the segment, then, under an exclusive lock on the run (and
the store's writer lock, which keeps garbage collection out), re-reads the manifest, drops
rows whose request key another recorder stored meanwhile (first writer wins; the duplicate
answer is discarded and counted), appends the segment, re-derives the fingerprint and
replaces the manifest atomically. Rows leave the buffer only once the manifest naming them
is durable: a kill -9 loses at most the rows not yet flushed, a failed write (disk full)
keeps them buffered for the next flush, and a row that cannot be encoded is set aside as a
failed slot (not stored, so it is sent again next time) instead of taking the others down.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..protocol.instrument import Instrument
from ..store import ROW_SCHEMA, RunManifest, Store
from ..store.fingerprint import FINGERPRINT_COLUMNS
from ..store.schema import to_disk


@dataclass
class Unstorable:
    """A row that could not be encoded: its slot counts as failed and is sent again later."""

    persona_id: Any
    item_id: Any
    repetition: Any
    error: str


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
        self.invalid_written = 0  # stored rows with rating -1
        self.unstorable: list[Unstorable] = []
        self.flush_errors: list[str] = []  # failed flushes (the rows stayed buffered)
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._timer = threading.Thread(target=self._tick, daemon=True)
        self._timer.start()

    def _tick(self) -> None:
        while not self._stop.wait(min(1.0, self.flush_seconds)):
            if time.monotonic() - self._last >= self.flush_seconds:
                try:
                    self.flush()
                except Exception as exc:
                    self.flush_errors.append(f"{type(exc).__name__}: {exc}")

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
        tables = [self.store.read_segment(n, FINGERPRINT_COLUMNS, run_id=manifest.run_id) for n in new]
        if self.known is not None:
            tables.insert(0, self.known)
        if tables:
            self.known = pa.concat_tables(tables)
        self.known_segments = names

    def _encode(self, rows: list[dict[str, Any]]) -> pa.Table:
        """Rows as a table; rows that cannot be encoded are set aside (and counted) one by one.

        ``to_disk`` is the conversion ``write_segment`` will do: a table that passes it writes."""
        try:
            table = pa.Table.from_pylist(rows, schema=ROW_SCHEMA)
            to_disk(table)
            return table
        except (pa.ArrowException, ValueError, TypeError, OverflowError):
            pass
        good = []
        for row in rows:
            try:
                one = pa.Table.from_pylist([row], schema=ROW_SCHEMA)
                to_disk(one)
                good.append(one)
            except (pa.ArrowException, ValueError, TypeError, OverflowError) as exc:
                self.unstorable.append(Unstorable(row.get("persona_id"), row.get("item_id"), row.get("repetition"),
                                                  f"cannot be stored: {exc}"))
        return pa.concat_tables(good) if good else ROW_SCHEMA.empty_table()

    def flush(self) -> int:
        """Store every pending row; they leave the buffer only once their manifest is durable."""
        with self.flush_lock:
            with self.lock:
                rows = list(self.pending)
                self._last = time.monotonic()
            if not rows:
                return 0
            table = self._encode(rows)
            stored = self._store(table) if table.num_rows else 0
            with self.lock:
                del self.pending[: len(rows)]  # add() only appends: these are exactly the flushed rows
            return stored

    def _store(self, table: pa.Table) -> int:
        run_id = self.template.run_id
        with self.store.run_lock(run_id), self.store.writing():
            manifest = self.store.get_run(run_id) or self._fresh_manifest()
            self._sync_known(manifest)
            if self.known is not None and self.known.num_rows:
                seen = pc.is_in(table["request_key"], value_set=self.known["request_key"])
                dup = pc.sum(seen).as_py() or 0
                if dup:
                    self.duplicates += dup
                    table = table.filter(pc.invert(seen))
            if not table.num_rows:
                return 0
            ref = self.store.write_segment(table)
            part = table.select(FINGERPRINT_COLUMNS)
            known = part if self.known is None else pa.concat_tables([self.known, part])
            manifest.segments.append(ref)
            Store.seal(manifest, known)
            self.store.save_manifest(manifest)
            self.known = known
            self.known_segments.append(ref.object)
            self.written += table.num_rows
            self.invalid_written += pc.sum(pc.equal(table["rating"], -1)).as_py() or 0
            return int(table.num_rows)

    def _fresh_manifest(self) -> RunManifest:
        return self.template.fresh()

    def close(self) -> None:
        """Stop the timer and flush what is left (an error here propagates: rows are lost only
        if the store cannot be written at all, and the caller reports how many)."""
        self._stop.set()
        self._timer.join(timeout=5)
        self.flush()

    @property
    def unflushed(self) -> int:
        with self.lock:
            return len(self.pending)


def existing_keys(store: Store, run_id: str) -> set[str]:
    m = store.get_run(run_id)
    if m is None:
        return set()
    return set(store.read_run(m, ["request_key"])["request_key"].to_pylist())
