"""What `analyze` keeps in the store's results cache (store/cache.py), and under which key.

A run's analysis rows (every group, every metric and SE, the corrected companions), or why it
was left out, depend on:
- its rows and those of every run its retention rule reads (the whole family under "family":
  the personas it keeps depend on its siblings), named by their fingerprints;
- the instrument, the retention rule, the draw counts and the seed;
- the code: the toolkit's version and a digest of its source files, so an edited checkout
  never reads what another code computed, and numpy's version (its random streams make the
  bootstrap replicates).
The key needs only manifests, so a hit decodes no row (it checks the segments' hashes, see
``lookup``). ``jobs``, the backend and the confidence level change nothing here and are not
in the key.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from .. import __version__
from ..errors import ToolkitError
from ..hashing import sha256_bytes
from ..store import RunManifest, Store
from ..store.cache import Entry, ResultCache, cache_key
from .options import AnalysisOptions
from .result import Result
from .selection import family_key

KIND = "analyze/1"


@cache
def code_digest() -> str:
    """SHA-256 over the toolkit's source files (path and bytes, in path order): 3 ms, once a
    process. A patch applied in memory (a test's monkeypatch) is not in it: use no cache there."""
    root = Path(__file__).resolve().parents[1]
    parts = []
    for path in sorted(root.rglob("*.py")):
        parts.append(f"{path.relative_to(root).as_posix()}\0{sha256_bytes(path.read_bytes())}")
    return sha256_bytes("\n".join(parts).encode("utf-8"))


def run_token(m: RunManifest) -> list[str] | None:
    """What names a run's rows in a key; None for a run without a fingerprint (not cached)."""
    return [m.run_id, m.fingerprint_version, m.fingerprint] if m.fingerprint else None


class Intact:
    """Whether a run's segments and instrument still match their hashes, checked once per run
    (store.check_bytes: no row decoded). What a cached result must pass before it is used, so
    that a damaged store fails with the cache as it fails without it."""

    def __init__(self, store: Store):
        self.store = store
        self.known: dict[str, bool] = {}

    def __call__(self, m: RunManifest) -> bool:
        if m.run_id not in self.known:
            try:
                self.store.check_bytes(m)
                self.known[m.run_id] = True
            except ToolkitError:
                self.known[m.run_id] = False
        return self.known[m.run_id]

    def check(self, runs: list[RunManifest]) -> None:
        """Check many runs, on two threads when there are more than a few (reading and hashing
        release the interpreter)."""
        todo = list({m.run_id: m for m in runs if m.run_id not in self.known}.values())
        if len(todo) <= 8:
            for m in todo:
                self(m)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(self, todo))


def material_of(value: Any) -> Any:
    """A key's view of an input: frames by ``frame_digest``, containers item by item, the
    rest as is (JSON values)."""
    if isinstance(value, pl.DataFrame):
        return {"frame": frame_digest(value)}
    if isinstance(value, dict):
        return {str(k): material_of(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [material_of(v) for v in value]
    return value


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


class Memo:
    """Whole results (a frame, the runs left out, notes) of any analysis, cached under a key
    of what was asked (``what``: JSON values and frames), the code and the fingerprints of
    ``runs``, the runs it may read (give every run of the store when in doubt: over-wide is
    safe). Reads with ``use``; writes where the store keeps results; a hit is used only when
    every one of ``runs`` is ``Intact``."""

    def __init__(self, store: Store, use: bool, kind: str = "memo/1"):
        self.store = store
        self.cache = ResultCache(store.root)
        self.use = use
        self.write = use and store.keeps_results
        self.kind = kind
        self.intact = Intact(store)

    def hit(self, what: Any, runs: list[RunManifest]) -> tuple[str, Entry | None]:
        key = cache_key({"kind": self.kind, "version": __version__, "code": code_digest(), "numpy": np.__version__,
                         "what": material_of(what), "runs": sorted(manifest_digest(m) for m in runs)})
        entry = self.cache.get(key)
        if entry is None or entry.kind != self.kind:
            return key, None
        self.intact.check(runs)
        return (key, entry) if all(self.intact(m) for m in runs) else (key, None)

    def keep(self, key: str, runs: list[RunManifest], meta: dict[str, Any], payload: bytes) -> None:
        if self.write:
            self.cache.put(Entry(key, self.kind, tuple(sorted({m.fingerprint for m in runs})),
                                 {"code": code_digest(), **meta}, payload))

    def usable(self, runs: list[RunManifest]) -> bool:
        return self.use and all(m.fingerprint for m in runs)

    def result(self, what: Any, runs: list[RunManifest], make: Callable[[], Result]) -> Result:
        """``make()``'s result, from the cache when it was made before from the same runs."""
        if not self.usable(runs):
            return make()
        key, entry = self.hit(what, runs)
        if entry is not None:
            skipped, notes = entry.meta.get("skipped"), entry.meta.get("notes")
            if isinstance(skipped, list) and isinstance(notes, list) and all(
                    isinstance(line, str) for line in [*skipped, *notes]):
                try:
                    return Result(decode_frame(entry.payload), tuple(skipped), tuple(notes))
                except ValueError:
                    pass
        made = make()
        self.keep(key, runs, {"skipped": list(made.skipped), "notes": list(made.notes)}, encode_frame(made.frame))
        return made


def manifest_digest(m: RunManifest) -> str:
    """A run in a ``Memo`` key: its whole manifest (rows by fingerprint, and every field an
    analysis may read beside them: the persona set that pairing compares, provenance a page
    shows). A compaction rewrites the segment list, so it costs a miss, never a wrong hit."""
    return sha256_bytes(m.to_json().encode("utf-8"))


@dataclass
class Cached:
    frame: pl.DataFrame  # the run's rows, every group, ANALYZE + CORRECTED columns
    note: str | None
    refusal: str | None


class AnalysisCache:
    """Lookups and writes of `analyze` results for one store and one set of options."""

    def __init__(self, store: Store, all_runs: list[RunManifest], options: AnalysisOptions,
                 schema: dict[str, Any]):
        self.store = store
        self.cache = ResultCache(store.root)
        self.intact = Intact(store)
        self.options = options
        self.schema = pl.Schema(schema)  # what an entry's frame must be to be used
        self.keys: dict[str, tuple[str, list[str]] | None] = {}  # by run id, computed once
        self.family: dict[Any, list[RunManifest]] = defaultdict(list)
        for m in all_runs:
            self.family[family_key(m)].append(m)

    def reads(self, m: RunManifest) -> list[RunManifest]:
        """The runs a run's analysis reads: its family under the family retention rule."""
        return self.family[family_key(m)] if self.options.retention == "family" else [m]

    def key(self, m: RunManifest) -> tuple[str, list[str]] | None:
        """The entry key of a run's analysis and the fingerprints it depends on; None when a
        run it depends on has no fingerprint."""
        if m.run_id not in self.keys:
            self.keys[m.run_id] = self._key(m)
        return self.keys[m.run_id]

    def _key(self, m: RunManifest) -> tuple[str, list[str]] | None:
        reads = self.reads(m)
        tokens = [run_token(r) for r in reads]
        own = run_token(m)
        if own is None or any(t is None for t in tokens):
            return None
        material = {"kind": KIND, "version": __version__, "code": code_digest(), "numpy": np.__version__, "run": own,
                    "reads": sorted(t for t in tokens if t is not None), "instrument": m.instrument.get("digest"),
                    **self.settings()}
        return cache_key(material), sorted(r.fingerprint for r in reads)

    def settings(self) -> dict[str, Any]:
        """The options an `analyze` result depends on: in its key, and in its entry (what
        `verify` recomputes it with)."""
        o = self.options
        return {"retention": o.retention, "bootstrap": o.bootstrap, "rerun_bootstrap": o.rerun_bootstrap,
                "seed": o.seed}

    def lookup(self, runs: list[RunManifest]) -> dict[str, Cached]:
        """The cached results of these runs. A hit still checks the hashes of every segment it
        was computed from (about 1 ms a run, no row decoded; two threads, as hashing and reading
        release the interpreter): a damaged store fails as loudly with the cache as without
        it; such a run is a miss, and reading it says what is wrong."""
        found = {}
        for m in runs:
            k = self.key(m)
            entry = self.cache.get(k[0]) if k else None
            if entry is not None and entry.kind == KIND:
                found[m.run_id] = entry
        self.intact.check([r for m in runs if m.run_id in found for r in self.reads(m)])
        out = {}
        for m in runs:
            entry = found.get(m.run_id)
            if entry is None or not all(self.intact(r) for r in self.reads(m)):
                continue
            try:
                frame = decode_frame(entry.payload)
            except ValueError:  # a payload that is no table is a miss, like any damage
                continue
            note, refusal = entry.meta.get("note"), entry.meta.get("refusal")
            if frame.schema != self.schema or not all(v is None or isinstance(v, str) for v in (note, refusal)):
                continue
            out[m.run_id] = Cached(frame, note, refusal)
        return out

    def save(self, results: list[tuple[RunManifest, pl.DataFrame, str | None, str | None]]) -> None:
        """Keep each (run, rows, note, why it was left out), all written with one sync. The rows
        go to Arrow in one conversion, each run's a slice of it (0.25 ms a frame otherwise)."""
        if not self.store.keeps_results or not results:
            return
        table = pl.concat([frame for _, frame, _, _ in results], rechunk=True).to_arrow()
        starts = itertools.accumulate((frame.height for _, frame, _, _ in results), initial=0)
        entries = (self._entry(m, table.slice(at, frame.height), note, refusal)
                   for (m, frame, note, refusal), at in zip(results, starts))
        self.cache.put_many([e for e in entries if e is not None])

    def _entry(self, m: RunManifest, rows: pa.Table, note: str | None, refusal: str | None) -> Entry | None:
        k = self.key(m)
        if k is None:
            return None
        meta = {"note": note, "refusal": refusal, "run_id": m.run_id, "code": code_digest(),  # `verify`, `compact`
                "options": self.settings()}
        return Entry(k[0], KIND, tuple(k[1]), meta, encode_frame(rows))


def encode_frame(frame: pl.DataFrame | pa.Table) -> bytes:
    """A frame as an Arrow IPC stream (exact: every float's bits kept), by pyarrow: polars'
    own writer takes 0.5 ms a call through its query engine. The rows are copied into fresh
    buffers first: a slice of a larger table keeps its neighbours' bits in the padding of its
    validity bitmaps, and the same rows must give the same bytes however they were sliced."""
    table = frame if isinstance(frame, pa.Table) else frame.to_arrow()
    table = pa.table([_fresh(c) for c in table.columns], schema=table.schema)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def _fresh(column: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    """A column whose buffers carry nothing of other rows: copied, unless it is floats without a
    null (Arrow's writer then writes just the slice's values; most of a row's columns are
    such, and copying all of them cost 0.05 ms a run). Not Table.take: that imports
    pyarrow.compute (40 ms)."""
    if column.num_chunks and (column.null_count or not pa.types.is_floating(column.type)):
        return pa.concat_arrays(column.chunks)
    return column


def decode_frame(payload: bytes) -> pl.DataFrame:
    """The frame of ``encode_frame``; ValueError when the bytes are no such frame. The table
    is validated in full first: a carried entry's bytes are its author's, and a hash proves
    only that they arrived as written."""
    try:
        table = pa.ipc.open_stream(payload).read_all()
        table.validate(full=True)
        frame = pl.from_arrow(table)
    except (pa.ArrowException, pl.exceptions.PolarsError) as exc:
        raise ValueError(f"not an Arrow table: {exc}") from None
    if not isinstance(frame, pl.DataFrame):
        raise ValueError("not a table")
    return frame


def same_values(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    """Equal schemas and every value the same, floats bit for bit (NaN and -0.0 included)."""
    if a.schema != b.schema or a.height != b.height:
        return False
    for name, dtype in a.schema.items():
        x, y = a[name], b[name]
        if dtype.is_float():
            xs, ys = x.to_numpy(), y.to_numpy()
            if xs.tobytes() != ys.tobytes():
                return False
        elif not x.equals(y, check_names=True):
            return False
    return True


def recheck(store: Store) -> tuple[int, int, list[tuple[str, str]]]:
    """Recompute every `analyze` entry of the store's cache that the current code and runs
    still reach: (entries checked, entries no run or code of now reaches, problems as
    (entry, what is wrong)). A carried entry (a bundle's) is trusted by nothing else. The
    entries of one set of options are recomputed by one `analyze` call (a run's values do not
    depend on which other runs are selected: seeds come from its content, retention reads its
    whole family whatever the selection)."""
    from ..hashing import canonical_json
    from ..store.query import Selection
    from .api import ROW_SCHEMA, analyze

    runs = store.runs()
    by_id = {m.run_id: m for m in runs}
    unreached = 0
    groups: dict[str, tuple[AnalysisCache, list[tuple[str, RunManifest]]]] = {}
    for path, entry in ResultCache(store.root).entries():
        if entry is None or entry.kind != KIND:
            continue
        m = by_id.get(str(entry.meta.get("run_id")))
        raw = entry.meta.get("options")
        try:
            options = AnalysisOptions(**raw) if isinstance(raw, dict) else None
        except (TypeError, ToolkitError):
            options = None
        if m is None or options is None:
            unreached += 1
            continue
        group = groups.setdefault(canonical_json(raw), (AnalysisCache(store, runs, options, ROW_SCHEMA), []))
        key = group[0].key(m)
        if key is None or key[0] != entry.key:
            unreached += 1
            continue
        group[1].append((path.name, m))
    checked, problems = 0, []
    for group_cache, members in groups.values():
        if not members:
            continue
        got = analyze(store, Selection(run_id=[m.run_id for _, m in members]), by_group=True, corrected=True,
                      options=group_cache.options.but(cache=False), on_error="skip")
        held = group_cache.lookup([m for _, m in members])
        for name, m in members:
            checked += 1
            mine = held.get(m.run_id)
            refused = any(line.startswith(f"run {m.run_id}:") for line in got.skipped)
            if mine is None or not same_values(mine.frame, got.frame.filter(run_id=m.run_id)) or \
                    bool(mine.refusal) != refused:
                problems.append((name, f"holds results for run {m.run_id} that this toolkit does not compute "
                                       "from its rows"))
    return checked, unreached, problems
