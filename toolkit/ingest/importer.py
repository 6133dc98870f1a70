"""Import files into the store: the published CSV trees, any format of ``toolkit.ingest``, or
Inspect logs of the persona_moral task.

Files stream through: each is parsed, validated and written in turn, and the manifests are
saved together at the end, so a bad file in a batch changes no run (the segments the batch
wrote are removed again). Rows go through the store's one segment writer and the one
request-key function, like recorded rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ToolkitError
from ..protocol.instrument import Instrument, load_instrument
from ..protocol.personas import load_personas
from ..store import RunManifest, Store
from .inspect_log import SUFFIXES as INSPECT_SUFFIXES
from .inspect_log import is_inspect_log, parse_inspect_log
from .pipeline import ENDPOINT, model_from_name, parse_file, temperature_from_name
from .source import CONTAINERS

__all__ = ["ENDPOINT", "ImportResult", "import_files", "import_paths", "import_sources", "model_from_name",
           "temperature_from_name"]


@dataclass
class ImportResult:
    path: str
    run_id: str
    rows: int
    status: str  # added | unchanged | replaced
    notes: str = ""  # what the file lacked or carried beyond its format (missing optional columns, ...)


def _walk(folder: Path) -> list[Path]:
    """Every .csv file under a folder (a published tree); a link that loops or leads nowhere is
    an error, not a file silently left out of an import."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        for name in sorted(dirnames + filenames):
            entry = Path(dirpath) / name
            if entry.is_symlink():
                try:
                    entry.resolve(strict=True)
                except (OSError, RuntimeError):
                    raise ToolkitError("symbolic link loops or leads nowhere", path=str(entry)) from None
        found.extend(Path(dirpath) / f for f in filenames
                     if f.endswith((".csv", *INSPECT_SUFFIXES)) and (Path(dirpath) / f).is_file())
    return sorted(found)


def _expand(paths: Sequence[str | Path]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_symlink() and not p.exists():
            raise ToolkitError("symbolic link loops or leads nowhere", path=str(p))
        if p.is_dir():
            found = _walk(p)
            if not found:
                raise ToolkitError("folder holds no .csv files or Inspect .eval logs", path=str(p))
            files.extend(found)
        elif p.is_file():
            if p.suffix.lower() not in CONTAINERS and not is_inspect_log(p):
                known = ", ".join(sorted(CONTAINERS) + [*INSPECT_SUFFIXES, ".json (Inspect log)"])
                raise ToolkitError(f"unknown file type {p.suffix!r} (expected {known})", path=str(p))
            files.append(p)
        else:
            raise ToolkitError("no such file or folder", path=str(p))
    return files


def import_paths(
    store: Store,
    paths: Sequence[str | Path],
    *,
    model: str | None = None,
    variant: str | None = None,
    temperature: float | None = None,
    mode: str | None = None,
    columns: dict[str, str] | None = None,
    instrument: Instrument | str | None = None,
    personas: str | Path | None = None,
    replace: bool = False,
    jobs: int = 2,
) -> list[ImportResult]:
    """Import published CSV files or whole published trees (``<variant>/<model>_tempNN.csv``),
    or files of any ingest format (``columns`` renames a file's columns to a format's names).
    ``personas``: the persona file that answered them (persona id = position in it), recorded
    in each run so that `compare --paired` pairs runs of the same persona set only."""
    files = _expand(paths)
    if model is not None and len(files) > 1:
        raise ToolkitError("--model names one run: give one file, or let model names come from file names")
    named = load_personas(personas).named() if personas is not None else None
    given = {"model": model, "variant": variant, "temperature": temperature, "mode": mode, "columns": columns,
             "personas": named}
    return import_files(store, [(f, given) for f in files], instrument=instrument, replace=replace, jobs=jobs)


PROCESS_MIN_FILES = 16  # from this many files on, workers are processes (measured: see bench_scale)


@dataclass
class _Prepared:
    """One file parsed, validated, sealed and encoded: all a store write needs, and picklable."""

    path: Path
    manifest: RunManifest
    segment: bytes | None  # the encoded Parquet segment (None for a file with no rows)
    rows: int
    notes: list[str]


def _prepare(item: tuple[Path, dict[str, Any]], instrument: Instrument) -> _Prepared:
    """The CPU work of one file, with no store access: it runs on threads or processes alike."""
    path = Path(item[0])
    if is_inspect_log(path):
        if item[1].get("columns"):
            raise ToolkitError("--column-map maps table columns; an Inspect log has none to map", path=str(path))
        if item[1].get("personas"):
            raise ToolkitError("an Inspect log names its own persona set; --personas is for table files",
                               path=str(path))
        p = parse_inspect_log(path, instrument, **{k: item[1].get(k) for k in ("model", "variant", "temperature",
                                                                                 "mode", "expect_sha256")})
    else:
        p = parse_file(path, instrument, **{k: item[1].get(k) for k in ("model", "variant", "temperature", "mode",
                                                                         "columns", "expect_sha256", "personas")})
    Store.seal(p.manifest, p.table)
    segment = Store.encode_segment(p.table) if p.table.num_rows else None
    return _Prepared(path, p.manifest, segment, p.table.num_rows, p.notes)


def import_files(
    store: Store,
    files: Sequence[tuple[Path, dict[str, Any]]],
    *,
    instrument: Instrument | str | None = None,
    replace: bool = False,
    jobs: int = 2,
    backend: str | None = None,
) -> list[ImportResult]:
    """Import files, each with its own ``model/variant/temperature/mode`` overrides (None =
    from the file). On any error no run changes.

    Streaming: workers parse, validate and encode one file at a time; this process writes
    each segment as it arrives, so memory is bounded by a few files, not their number. Workers
    are threads for a few files and processes from PROCESS_MIN_FILES on (``backend`` forces
    one): the per-row request hashing holds the GIL. All-or-nothing holds for the manifests:
    they are saved together at the end, and on any error the segments this import created
    are removed again.
    """
    from ..parallel import delayed
    from ..parallel.pool import Workers

    inst = instrument if isinstance(instrument, Instrument) else load_instrument(instrument)
    workers = max(1, min(jobs, len(files)))
    if backend is None:
        backend = "loky" if workers > 1 and len(files) >= PROCESS_MIN_FILES else "threading"
    created: set[str] = set()
    seen: dict[str, Path] = {}
    held = contextlib.ExitStack()
    locked: list[bool] = []
    staged: list[tuple[RunManifest, str, ImportResult]] = []
    added_instrument: list[str] = []

    def before_first_write() -> None:
        """Take the writer lock and store the instrument only once something is to be written:
        a refused import of bad files leaves no trace in the store at all."""
        if not locked:
            held.enter_context(store.writing())
            if store.put_instrument(inst):
                added_instrument.append(inst.digest)
            locked.append(True)

    def commit(p: _Prepared) -> None:
        rid = p.manifest.run_id
        if rid in seen:
            raise ToolkitError(f"run {rid} would come from two files: {seen[rid]} and {p.path}", path=str(p.path))
        seen[rid] = p.path
        existing = store.get_run(rid)
        if existing is None:
            status = "added"
        elif [s.get("sha256") for s in existing.sources] == [p.manifest.sources[0]["sha256"]]:
            status = "unchanged"
        elif replace:
            status = "replaced"
        else:
            raise ToolkitError(
                f"run {rid} already holds different data "
                f"({existing.sources[0]['file'] if existing.sources else 'recorded'});"
                " use --replace to overwrite it",
                path=str(p.path),
            )
        if status != "unchanged" and p.segment is not None:
            before_first_write()
            p.manifest.segments = [store.write_encoded(p.segment, p.rows, created)]
        staged.append((p.manifest, status, ImportResult(str(p.path), rid, p.rows, status, "; ".join(p.notes))))

    pool = Workers(workers, backend)
    with _undone_on_error(store, created, added_instrument), held:
        for prepared in pool.stream(delayed(_prepare)(item, inst) for item in files):
            commit(prepared)
        changed = [manifest for manifest, status, _ in staged if status != "unchanged"]
        if changed:
            before_first_write()
        _save_manifests(store, changed)
    return [result for _, _, result in staged]


@contextlib.contextmanager
def _undone_on_error(store: Store, created: set[str], instruments: list[str] | None = None) -> Iterator[None]:
    """All or nothing: on any error, the segments (and the instrument) an import wrote are
    removed again."""
    try:
        yield
    except BaseException:
        if created:
            store.discard(created)
        for digest in instruments or []:
            store.discard_instrument(digest)
        raise


def _save_manifests(store: Store, manifests: list[RunManifest]) -> None:
    """The last step of an import: its runs appear together, after every segment is durable."""
    for manifest in manifests:
        with store.run_lock(manifest.run_id):
            store.save_manifest(manifest)


def import_bundle(store: Store, path: str | Path, *, replace: bool = False) -> list[ImportResult]:
    """Add a bundle's runs to a store: the bundle is checked member by member first; a run the
    store already holds with the same fingerprint is ``unchanged``, one with other data needs
    ``replace``. As for files, the manifests are saved together at the end, and on any error
    the segments this import wrote are removed again."""
    from ..store.bundle import open_bundle

    source, _ = open_bundle(path)
    created: set[str] = set()
    staged: list[tuple[RunManifest, ImportResult]] = []
    with _undone_on_error(store, created), store.writing():
        for m in source.runs():
            existing = store.get_run(m.run_id)
            if existing is not None and existing.fingerprint == m.fingerprint:
                staged.append((m, ImportResult(str(path), m.run_id, m.rows, "unchanged")))
                continue
            if existing is not None and not replace:
                raise ToolkitError(f"run {m.run_id} already holds different data; use --replace to overwrite it",
                                   path=str(path))
            store.put_instrument(source.instrument(m.instrument["digest"]))
            segments = [store.write_encoded(source.read_segment_bytes(s.object, m.run_id), s.rows, created)
                        for s in m.segments]
            status = "added" if existing is None else "replaced"
            result = ImportResult(str(path), m.run_id, m.rows, status)
            staged.append((dataclasses.replace(m, segments=segments), result))
        _save_manifests(store, [manifest for manifest, result in staged if result.status != "unchanged"])
    return [result for _, result in staged]


def import_sources(store: Store, paths: Sequence[str | Path], *, replace: bool = False,
                   **overrides: Any) -> list[ImportResult]:
    """What `toolkit import` takes: published files and folders, long-format files and Inspect
    logs (``overrides``: model, variant, temperature, mode, columns, instrument), or one
    bundle, imported alone and as it is."""
    from ..store.bundle import is_bundle

    if any(is_bundle(p) or Path(p).suffix.lower() == ".zip" for p in paths):  # a damaged bundle is named so
        if len(paths) > 1 or any(v is not None for v in overrides.values()):
            raise ToolkitError("a bundle is imported alone and as it is: its runs keep their names and instrument")
        return import_bundle(store, paths[0], replace=replace)
    return import_paths(store, paths, replace=replace, **overrides)
