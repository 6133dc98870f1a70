"""The content-addressed store: segments, instruments and run manifests on disk.

Layout (docs/store-format.md)::

    <store>/objects/ab/abcdef....parquet   immutable row segments, named by SHA-256 of bytes
    <store>/instruments/<digest>.json      instrument files, named by their digest
    <store>/runs/<quoted run_id>.json      run manifests (the only mutable files)
    <store>/locks/                         flock files (never committed, never read as data)

Trust nothing that was read: every segment's bytes are hashed before they are parsed, every
manifest is parsed strictly and checked against the rows it names, and ``verify``
re-derives every request key and fingerprint. Writers meet under locks: a per-run lock for
a manifest's read-modify-write, and a store lock that writers hold shared from the moment
they write a segment until the manifest naming it is saved, and that garbage collection
holds exclusively, so it can never delete an object a writer is about to reference.

The store knows rows, segments and manifests; it knows nothing of S or R.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import StoreCorrupt, ToolkitError
from ..hashing import canonical_json, parse_json, sha256_bytes, sha256_text
from ..protocol.instrument import Instrument, parse_instrument
from .arrays import only
from .atomic import TMP_PREFIX, atomic_write_bytes
from .cache import ResultCache
from .generations import GENERATIONS, SLOT, has_repeated_slots, newest_positions, slot_arrays
from .manifest import (
    DIGEST_RE,
    MANIFEST_FORMAT,
    SEALED_FORMATS,
    ManifestError,
    RunManifest,
    SegmentRef,
    manifest_filename,
)
from .schema import ROW_SCHEMA, columns_on_disk, to_current, to_disk, version_of

ENV_VAR = "TOOLKIT_STORE"
DEFAULT_DIRNAME = "parquet"
# Low-cardinality columns only: dictionary-encoding random keys costs time and space.
DICTIONARY_COLUMNS = ["run_id", "instrument", "provenance", "response", "finish_reason", "collected_at"]
# Test hook: seconds a writer waits between writing a segment and saving the manifest that
# names it (widens the window a garbage collector would have to hit). Never set in use.
_TEST_DELAY_ENV = "TOOLKIT_TEST_WRITER_DELAY"


T = TypeVar("T")

INSTALLED_DEMO = Path(__file__).resolve().parents[1] / "demo_store"  # exists in an installed package only


def embedded_store_path() -> Path:
    """The demo store: ``parquet/`` of the source tree, or its copy installed with the package
    (``toolkit.demo_store``). Read-only: nothing writes here unless it is named explicitly."""
    tree = Path(__file__).resolve().parents[2]
    if (tree / "pyproject.toml").is_file() and (tree / DEFAULT_DIRNAME).is_dir():
        return tree / DEFAULT_DIRNAME
    return INSTALLED_DEMO


def default_store_path(*, write: bool = False) -> Path:
    """Where a command works when no store is named: ``$TOOLKIT_STORE``, else ``./parquet`` if
    the working directory has one, else (reading only) the embedded demo store. A writing
    command never falls back to the demo store, which may sit inside an installed package."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    here = Path.cwd() / DEFAULT_DIRNAME
    if here.is_dir() and not (write and here.resolve() == embedded_store_path().resolve()):
        return here  # the source tree's demo store only for reading, unless named with --store parquet
    if write:
        raise ToolkitError("this command writes to a store: give --store DIR, set $TOOLKIT_STORE, or run it in a "
                           "folder that has a parquet/ store (the embedded demo store is read-only unless named "
                           "with --store)")
    return embedded_store_path()


def resolve_store(given: str | Path | None, *, write: bool = False) -> Path:
    """The store a command uses: ``given`` (--store), else the default above. A reading command
    on a folder that does not exist is an error, not an empty store."""
    path = Path(given) if given else default_store_path(write=write)
    if not write and not is_store_folder(path):
        raise ToolkitError(f"no store at {path} (a store folder holds runs/, objects/ and instruments/)")
    return path


def open_files() -> set[Path]:
    """Every file some process on this machine holds open (from /proc; empty where there is
    none), so that a cleanup never removes a file still being written."""
    held: set[Path] = set()
    proc = Path("/proc")
    for fd_dir in proc.glob("[0-9]*/fd") if proc.is_dir() else []:
        try:
            for fd in fd_dir.iterdir():
                target = os.readlink(fd)
                if target.startswith("/"):
                    held.add(Path(target))
        except OSError:  # a process that ended, or one we may not look into
            continue
    return held


def is_store_folder(path: Path) -> bool:
    """A folder with a store's layout: at least two of runs/, objects/ and instruments/ (of any
    kind: a store whose runs/ was replaced by a file is a damaged store, for ``verify`` to name).
    ``/``, a plain folder, or a store never written to is not one."""
    return path.is_dir() and sum((path / part).exists() for part in ("runs", "objects", "instruments")) >= 2


@dataclass(frozen=True)
class Problem:
    """One integrity problem found by ``verify``; ``obj`` names the damaged object."""

    obj: str
    message: str

    def __str__(self) -> str:
        return f"{self.obj}: {self.message}"


def open_store(given: str | Path | None = None, *, write: bool = False) -> Store:
    """What every command opens: a store folder (``given``, else the default above), or a bundle
    file, checked and read from a private copy (reading only: a bundle is never written)."""
    if given and Path(given).is_file():
        from .bundle import is_bundle, open_bundle

        if write:
            if not is_bundle(given):
                raise ToolkitError("is a file, not a store folder (--store names a folder)", path=str(given))
            raise ToolkitError(f"{given} is a bundle, which is read-only: add its runs to a store with "
                               "`toolkit import BUNDLE --store DIR`")
        return open_bundle(given)[0]
    return Store(resolve_store(given, write=write))


class Store:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_store_path()
        self.carried_personas: dict[str, Path] = {}  # a bundle's persona files, by digest (bundle.open_bundle)
        self._instruments: dict[str, tuple[bytes, Instrument]] = {}  # checked bytes, parsed (instrument())

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
        if not DIGEST_RE.match(digest):  # never a path outside objects/
            raise StoreCorrupt(f"{digest!r} is not an object name")
        return self.objects_dir / digest[:2] / f"{digest}.parquet"

    def manifest_path(self, run_id: str) -> Path:
        return self.runs_dir / manifest_filename(run_id)

    # ----- locks -------------------------------------------------------------------------
    @property
    def keeps_results(self) -> bool:
        """Whether analyses may write their results cache here: not into the demo store (the
        source tree's ``parquet/`` or its installed copy), which nothing writes unless asked."""
        return self.root.resolve() not in (INSTALLED_DEMO, embedded_store_path().resolve())

    def _refuse_installed_demo(self) -> None:
        if self.root.resolve() == INSTALLED_DEMO:
            raise ToolkitError(f"the demo store installed with the package ({self.root}) is read-only; give a "
                               "store of your own (--store DIR or $TOOLKIT_STORE)")

    @contextmanager
    def _flock(self, name: str, mode: int) -> Iterator[None]:
        self._refuse_installed_demo()  # every write takes a lock: none reaches the package
        lock_dir = self.root / "locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        with open(lock_dir / name, "a+b") as fh:
            fcntl.flock(fh, mode)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @contextmanager
    def run_lock(self, run_id: str) -> Iterator[None]:
        """Exclusive lock on one run's manifest (released by the kernel even on kill -9)."""
        with self._flock(manifest_filename(run_id) + ".lock", fcntl.LOCK_EX):
            yield

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Held (shared) from writing a segment until the manifest naming it is saved."""
        with self._flock("store.lock", fcntl.LOCK_SH):
            yield

    @contextmanager
    def collecting(self) -> Iterator[None]:
        """Held (exclusive) by garbage collection: no writer is between segment and manifest."""
        with self._flock("store.lock", fcntl.LOCK_EX):
            yield

    # ----- segments ----------------------------------------------------------------------
    @staticmethod
    def encode_segment(table: pa.Table) -> bytes:
        disk = to_disk(table)
        sink = pa.BufferOutputStream()
        pq.write_table(disk, sink, compression="zstd", compression_level=1, use_dictionary=DICTIONARY_COLUMNS,
                       row_group_size=1 << 20)
        return bytes(sink.getvalue().to_pybytes())

    def write_segment(self, table: pa.Table, created: set[str] | None = None) -> SegmentRef:
        """Write rows as one immutable segment; an identical segment is stored once.

        Call it inside ``writing()``: a re-used object gets a fresh modification time, and the
        shared lock keeps garbage collection away until the manifest names it."""
        return self.write_encoded(self.encode_segment(table), table.num_rows, created)

    def write_encoded(self, data: bytes, rows: int, created: set[str] | None = None) -> SegmentRef:
        """Store bytes made by ``encode_segment`` (perhaps in another process) under their hash;
        ``created`` collects the objects this call added, for ``discard`` after a failure."""
        digest = sha256_bytes(data)
        path = self.object_path(digest)
        if path.exists():
            os.utime(path)
        elif atomic_write_bytes(path, data, exclusive=True) and created is not None:
            created.add(digest)
        delay = os.environ.get(_TEST_DELAY_ENV)
        if delay:
            time.sleep(float(delay))
        return SegmentRef(object=digest, rows=rows, bytes=len(data))

    def _verified_bytes(self, digest: str, run_id: str | None = None) -> bytes:
        path = self.object_path(digest)
        where = f" (run {run_id})" if run_id else ""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise StoreCorrupt(f"segment {digest}{where} is missing from the store (run `verify`)",
                               path=str(path)) from None
        except OSError as exc:
            raise StoreCorrupt(f"segment {digest}{where} cannot be read: {exc.strerror or exc}",
                               path=str(path)) from None
        if sha256_bytes(data) != digest:
            raise StoreCorrupt(f"segment {digest}{where} is damaged: its bytes do not match its SHA-256 name",
                               path=str(path))
        return data

    def read_segment_bytes(self, digest: str, run_id: str | None = None) -> bytes:
        """A segment's bytes, whose hash was just checked (to copy it into another store)."""
        return self._verified_bytes(digest, run_id)

    def _sized_bytes(self, digest: str, run_id: str | None, size: int | None) -> bytes:
        """A segment's bytes, their hash checked, and their length when the manifest gives it."""
        data = self._verified_bytes(digest, run_id)
        if size is not None and len(data) != size:
            raise StoreCorrupt(f"run {run_id}: segment {digest} has {len(data)} bytes, its manifest says {size}")
        return data

    def read_segment(self, digest: str, columns: list[str] | None = None, *, run_id: str | None = None,
                     size: int | None = None, encoded: tuple[str, ...] = ()) -> pa.Table:
        """The rows of one segment, from bytes whose hash was just checked. Columns named in
        ``encoded`` come back dictionary-encoded, as written: a column read only to be checked
        (the run id of 30,000 rows is one value) then costs no string per row (3.2 -> 1.0 ms)."""
        data = self._sized_bytes(digest, run_id, size)
        try:
            reader = pq.ParquetFile(pa.BufferReader(data), read_dictionary=list(encoded) or None)
            version = version_of(reader.schema_arrow)
            # one segment is small: Arrow's thread pool costs more than it gives (and a forked
            # analysis worker must not start threads)
            table = reader.read(columns=columns_on_disk(version, columns), use_threads=False)
            return to_current(table, version, columns)
        except (pa.ArrowException, ValueError, OSError) as exc:
            raise StoreCorrupt(f"segment {digest} cannot be read: {exc}", path=str(self.object_path(digest))) \
                from None

    # ----- instruments -------------------------------------------------------------------
    def put_instrument(self, instrument: Instrument) -> bool:
        """Store an instrument under its digest; True when this call added the file."""
        path = self.instruments_dir / f"{instrument.digest}.json"
        if path.exists():
            return False
        return atomic_write_bytes(path, (canonical_json(instrument.raw) + "\n").encode("utf-8"), exclusive=True)

    def discard_instrument(self, digest: str) -> None:
        """Remove an instrument a failed write added, unless a run names it by now."""
        if not any(m.instrument["digest"] == digest for m in self.runs()):
            (self.instruments_dir / f"{digest}.json").unlink(missing_ok=True)

    def instrument(self, digest: str) -> Instrument:
        """The instrument of that digest, its file checked against the name. The bytes of the
        last one checked are kept: the same bytes again (one analysis reads it once per run)
        are the same instrument, without parsing and hashing them again."""
        path = self.instruments_dir / f"{digest}.json"
        try:
            data = path.read_bytes()
            known = self._instruments.get(digest)
            if known is not None and known[0] == data:
                return known[1]
            raw = parse_json(data.decode("utf-8"))
        except FileNotFoundError:
            raise StoreCorrupt(f"instrument {digest} is missing from the store", path=str(path)) from None
        except (ValueError, UnicodeDecodeError, OSError) as exc:
            raise StoreCorrupt(f"instrument {digest} is unreadable: {exc}", path=str(path)) from None
        if sha256_text(canonical_json(raw)) != digest:
            raise StoreCorrupt(f"instrument {digest} is damaged: its content does not match its name", path=str(path))
        instrument = parse_instrument(raw, str(path))
        self._instruments[digest] = (data, instrument)
        return instrument

    def check_writable(self) -> None:
        """Prove that every folder a writer uses takes a new file (a read-only mount, a folder
        without write permission, a full disk): ToolkitError (exit 2) naming it, nothing left."""
        import tempfile

        self._refuse_installed_demo()
        for folder in (self.root, self.runs_dir, self.objects_dir, self.instruments_dir):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                with tempfile.NamedTemporaryFile(dir=folder, prefix=TMP_PREFIX + "probe-"):
                    pass
            except OSError as exc:
                raise ToolkitError(f"the store cannot be written: {exc.strerror or exc}", path=str(folder)) from None

    # ----- manifests ---------------------------------------------------------------------
    def manifest_files(self) -> list[Path]:
        """The run manifests' files, sorted (temp files of a writer left out)."""
        if not self.runs_dir.exists():
            return []
        if not self.runs_dir.is_dir():
            raise StoreCorrupt("runs/ is not a folder", path=str(self.runs_dir))
        return sorted(p for p in self.runs_dir.iterdir() if not p.name.startswith(TMP_PREFIX))

    def runs(self) -> list[RunManifest]:
        """All run manifests, sorted by run id; any unreadable one is StoreCorrupt (exit 1)."""
        out = [self._load_manifest(p) for p in self.manifest_files()]
        return sorted(out, key=lambda m: m.run_id)

    def _load_manifest(self, path: Path) -> RunManifest:
        try:
            if not path.is_file() or path.suffix != ".json":
                raise ManifestError("not a manifest file")
            m = RunManifest.from_dict(parse_json(path.read_text(encoding="utf-8")))
        except (ValueError, UnicodeDecodeError, OSError) as exc:
            raise StoreCorrupt(f"unreadable run manifest: {exc}", path=str(path)) from None
        if path.name != manifest_filename(m.run_id):
            raise StoreCorrupt(f"manifest of run {m.run_id} is stored under another run's file name",
                               path=str(path))
        return m

    def get_run(self, run_id: str) -> RunManifest | None:
        path = self.manifest_path(run_id)
        return self._load_manifest(path) if path.exists() else None

    def save_manifest(self, manifest: RunManifest) -> None:
        if manifest.format in SEALED_FORMATS:
            manifest.seal = manifest.seal_of()
        atomic_write_bytes(self.manifest_path(manifest.run_id), manifest.to_json().encode("utf-8"))

    def read_run(self, run: RunManifest | str, columns: list[str] | None = None, *,
                 generations: str = "all") -> pa.Table:
        """A run's rows from verified segments, checked against its manifest: every row carries
        the run's id and instrument, and the row counts are the manifest's. ``generations``:
        "all" rows in store order, or "newest", one row per slot (generations.py): the rows
        every count and analysis reads."""
        manifest = run if isinstance(run, RunManifest) else self.get_run(run)
        if manifest is None:
            raise ToolkitError(f"no run {run!r} in store {self.root}")
        if generations not in GENERATIONS:
            raise ValueError(f"generations is one of {', '.join(GENERATIONS)}, not {generations!r}")
        if generations == "all":
            return self.consistently(manifest, lambda m: self._read_checked(m, columns))
        return self.consistently(manifest, lambda m: self._read_newest(m, columns))

    def _read_newest(self, m: RunManifest, columns: list[str] | None) -> pa.Table:
        """The newest row of each slot; checked on the slot columns alone, so a run without
        refreshed slots costs one bincount, not a second read."""
        wanted = list(ROW_SCHEMA.names) if columns is None else list(columns)
        table = self._read_checked(m, wanted + [c for c in SLOT if c not in wanted])
        slots = slot_arrays(table)
        if not has_repeated_slots(slots):
            return table.select(wanted)
        extra = self._read_checked(m, ["collected_at", "request_key"])
        keep = newest_positions(slots, extra["collected_at"], extra["request_key"])
        return table.take(pa.array(keep)).select(wanted)

    def consistently(self, manifest: RunManifest, read: Callable[[RunManifest], T]) -> T:
        """``read(manifest)``, once more with the run's fresh manifest when a concurrent
        ``compact`` replaced it mid-read (its old segments are then gone): the one read
        discipline of every reader (analysis, bundles)."""
        try:
            return read(manifest)
        except StoreCorrupt:
            fresh = self.get_run(manifest.run_id)
            if fresh is None or fresh.segments == manifest.segments:
                raise
            return read(fresh)

    def check_bytes(self, m: RunManifest) -> None:
        """StoreCorrupt unless every segment of the run and its instrument match their hashes
        and sizes: what a reader checks before trusting a result computed from them earlier
        (the results cache), without decoding a row."""
        self.instrument(m.instrument["digest"])
        for seg in m.segments:
            self._sized_bytes(seg.object, m.run_id, seg.bytes)

    def _read_checked(self, m: RunManifest, columns: list[str] | None) -> pa.Table:
        wanted = list(ROW_SCHEMA.names) if columns is None else list(columns)
        checked = tuple(c for c in ("run_id", "instrument") if c not in wanted)
        tables = []
        for seg in m.segments:
            t = self.read_segment(seg.object, wanted + list(checked), run_id=m.run_id, size=seg.bytes,
                                  encoded=checked)
            if t.num_rows != seg.rows:
                raise StoreCorrupt(f"run {m.run_id}: segment {seg.object} has {t.num_rows} rows, its manifest "
                                   f"says {seg.rows}")
            for col, value in (("run_id", m.run_id), ("instrument", m.instrument["digest"])):
                if t.num_rows and not only(t[col], value):
                    raise StoreCorrupt(f"run {m.run_id}: segment {seg.object} holds rows of another {col} "
                                       "(a manifest naming another run's segment?)")
            tables.append(t.select(wanted))
        total = sum(t.num_rows for t in tables)
        if total != m.rows:
            raise StoreCorrupt(f"run {m.run_id} has {total} rows, its manifest says {m.rows}")
        if not tables:
            return pa.schema([ROW_SCHEMA.field(c) for c in wanted]).empty_table()
        return pa.concat_tables(tables)

    def commit_run(self, manifest: RunManifest, tables: Iterable[pa.Table]) -> RunManifest:
        """Write segments, then the manifest naming them (manifest last: readers never see a
        manifest whose segments are not all on disk), under the run lock."""
        with self.run_lock(manifest.run_id), self.writing():
            written = []
            for table in tables:
                if table.num_rows:
                    manifest.segments.append(self.write_segment(table))
                    written.append(table)
            full = pa.concat_tables(written) if written else ROW_SCHEMA.empty_table()
            self.seal(manifest, full)
            self.save_manifest(manifest)
        return manifest

    @staticmethod
    def seal(manifest: RunManifest, table: pa.Table) -> None:
        """Current format, row count and fingerprint of a manifest over all its rows."""
        from .fingerprint import FINGERPRINT_VERSION, fingerprint  # imports polars: writers need it, readers not

        manifest.format = MANIFEST_FORMAT
        manifest.rows = table.num_rows
        manifest.fingerprint = fingerprint(table, manifest)
        manifest.fingerprint_version = FINGERPRINT_VERSION

    def compact(self, run_id: str) -> RunManifest:
        """Rewrite a run's segments as one in the current format, after verifying the run.

        A run that fails verification is refused (nothing is rewritten or deleted): compaction
        must never turn damaged bytes into a clean-looking segment. The rewritten rows must
        read back equal to the verified ones."""
        with self.run_lock(run_id), self.writing():
            m = self.get_run(run_id)
            if m is None:
                raise ToolkitError(f"no run {run_id!r} in store {self.root}")
            problems = self.verify_run(m)
            if problems:
                raise StoreCorrupt(f"run {run_id} fails verification; not compacting it: {problems[0].message}")
            table = self.read_run(m).sort_by([("persona_id", "ascending"), ("item_id", "ascending"),
                                               ("repetition", "ascending"), ("request_key", "ascending")])
            m.segments = [self.write_segment(table)] if table.num_rows else []
            if table.num_rows and not self._read_checked(m, None).equals(table):
                raise StoreCorrupt(f"run {run_id}: the compacted segment does not read back as written")
            self.seal(m, table)
            self.save_manifest(m)
            return m

    def compact_runs(self, run_id: str | None = None) -> list[tuple[int, RunManifest]]:
        """Compact one run, or every run: each compacted manifest with its segment count before."""
        chosen = [self.get_run(run_id)] if run_id else self.runs()
        if None in chosen:
            raise ToolkitError(f"no run {run_id!r} in store {self.root}")
        return [(len(m.segments), self.compact(m.run_id)) for m in chosen if m is not None]

    def discard(self, objects: set[str]) -> None:
        """Delete objects a failed write created, unless a manifest names them by now (under
        the exclusive lock: no writer is between writing and naming an object)."""
        with self.collecting():
            named = {s.object for m in self.runs() for s in m.segments}
            for digest in sorted(objects - named):
                path = self.object_path(digest)
                path.unlink(missing_ok=True)
                try:
                    path.parent.rmdir()
                except OSError:
                    pass

    def gc(self, grace_seconds: float = 3600.0) -> list[str]:
        """Delete objects no manifest names, older than ``grace_seconds``, under the exclusive
        store lock (no writer can be between writing a segment and naming it)."""
        removed = []
        with self.collecting():
            named = {s.object for m in self.runs() for s in m.segments}
            now = time.time()
            for path in sorted(self.objects_dir.glob("*/*.parquet")) if self.objects_dir.is_dir() else []:
                if path.stem not in named and path.is_file() and now - path.stat().st_mtime >= grace_seconds:
                    path.unlink()
                    removed.append(path.stem)
            # a writer killed mid-write (kill -9) leaves its temp file; one being written is younger
            # than any sane grace, and held open by its process
            folders = (self.runs_dir, self.instruments_dir, *sorted(self.objects_dir.glob("*")),
                       *sorted((self.root / "cache").glob("*")))
            old = [path for folder in folders
                   for path in (sorted(folder.glob(TMP_PREFIX + "*")) if folder.is_dir() else [])
                   if path.is_file() and now - path.stat().st_mtime >= grace_seconds]
            held = open_files() if old else set()  # /proc is read only when there is something to judge
            for path in old:
                if path.resolve() not in held:
                    path.unlink()
                    removed.append(path.name)
        return removed

    def prune_cache(self, code: str | None = None) -> int:
        """Remove results-cache entries nothing can reach any more (computed from a run since
        removed or re-recorded, or by other code than ``code``) and damaged ones; how many."""
        with self.collecting():
            return ResultCache(self.root).prune({m.fingerprint for m in self.runs() if m.fingerprint}, code)

    def remove_runs(self, run_ids: list[str], *, dry_run: bool = False) -> list[RunManifest]:
        """Remove runs from the store: their manifests go now (under each run's lock), their
        segments at the next ``gc`` (``compact``) once no run names them. Every id is checked
        first: an unknown one removes nothing."""
        found = []
        for run_id in run_ids:
            m = self.get_run(run_id)
            if m is None:
                raise ToolkitError(f"no run {run_id!r} in store {self.root}; nothing was removed")
            found.append(m)
        if not dry_run:
            for m in found:
                with self.run_lock(m.run_id):
                    self.manifest_path(m.run_id).unlink(missing_ok=True)
        return found

    # ----- integrity ---------------------------------------------------------------------
    def verify(self) -> list[Problem]:
        """Trust nothing: re-hash every object, re-derive every fingerprint and request key."""
        if not self.root.is_dir():
            return [Problem(str(self.root), "store folder does not exist")]
        problems: list[Problem] = []
        for path in sorted(self.objects_dir.glob("*/*")) if self.objects_dir.is_dir() else []:
            if path.name.startswith(TMP_PREFIX):
                continue
            name = f"object {path.name}"
            if not path.is_file() or path.suffix != ".parquet" or not DIGEST_RE.match(path.stem):
                problems.append(Problem(name, "is not a segment file"))
                continue
            if path.parent.name != path.stem[:2]:
                problems.append(Problem(name, "stored under the wrong prefix folder"))
            try:
                ok = sha256_bytes(path.read_bytes()) == path.stem
            except OSError as exc:
                problems.append(Problem(name, f"cannot be read: {exc.strerror or exc}"))
                continue
            if not ok:
                problems.append(Problem(name, "content does not match its SHA-256 name"))
        for path in sorted(self.instruments_dir.glob("*")) if self.instruments_dir.is_dir() else []:
            if path.name.startswith(TMP_PREFIX):
                continue
            try:
                ok = sha256_text(canonical_json(parse_json(path.read_text(encoding="utf-8")))) + ".json" == path.name
            except (ValueError, UnicodeDecodeError, OSError):
                ok = False
            if not ok:
                problems.append(Problem(f"instrument {path.name}", "content does not match its digest"))
        for path, entry in ResultCache(self.root).entries():
            if entry is None:
                problems.append(Problem(f"cache entry {path.name}", "is damaged (`toolkit compact` removes it; "
                                                                      "analysis never uses it)"))
        try:
            files = self.manifest_files()
        except StoreCorrupt as exc:
            return [*problems, Problem(str(self.runs_dir), exc.reason)]
        for path in files:
            try:
                m = self._load_manifest(path)
            except StoreCorrupt as exc:
                problems.append(Problem(f"manifest {path.name}", exc.reason))
                continue
            problems.extend(self.verify_run(m))
        return problems

    def verify_run(self, m: RunManifest) -> list[Problem]:
        """Every check on one run: segments intact and consistent, request keys, fingerprint."""
        import polars as pl

        from .fingerprint import fingerprint, fingerprint_v1

        name = f"run {m.run_id}"
        try:
            self.instrument(m.instrument["digest"])
            table = self._read_checked(m, None)
        except (StoreCorrupt, ToolkitError) as exc:
            return [Problem(name, exc.reason)]
        out: list[Problem] = []
        keys = pl.Series(table["request_key"])
        derived = [sha256_text(r) for r in table["request"].to_pylist()]
        bad = int((keys != pl.Series(derived, dtype=pl.String)).sum()) if len(keys) else 0
        if bad:
            out.append(Problem(name, f"{bad} rows have a request key that does not match their request"))
        if keys.n_unique() != len(keys):
            out.append(Problem(name, "duplicate request keys"))
        persona_null = table["persona_id"].null_count
        if (m.mode == "self") != (persona_null == table.num_rows) and table.num_rows:
            out.append(Problem(name, "persona ids do not match the run's mode (null exactly for self runs)"))
        if m.format == "toolkit-run/1":
            ok = fingerprint_v1(table) == m.fingerprint
        else:
            ok = fingerprint(table, m) == m.fingerprint
        if not ok:
            out.append(Problem(name, "logical fingerprint does not match the manifest"))
        if m.format in SEALED_FORMATS and m.seal != m.seal_of():
            out.append(Problem(name, "manifest fields do not match its seal (edited provenance or identity?)"))
        return out
