"""Get a catalogued dataset's files (download, or take them from a local folder), check every
digest, import them into a store.

Downloading is the only network access in the reviewer's path and lives here, outside the
analysis package; ``--from DIR`` makes the whole audit offline.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import ToolkitError
from ..hashing import sha256_file
from ..ingest.importer import import_files
from ..store import Store
from ..store.atomic import atomic_write_bytes
from .catalogue import Dataset, DatasetFile, FileVersion


def default_cache() -> Path:
    return Path(os.environ.get("TOOLKIT_DATASETS") or Path.home() / ".cache" / "persona-moral-toolkit" / "datasets")


def _find_local(folder: Path, f: DatasetFile) -> Path:
    """The file in ``folder`` with this name whose digest matches (layouts may differ:
    ``data/<variant>/``, ``<variant>/``, ``runs/<variant>/``...)."""
    candidates = sorted(p for p in folder.rglob(f.name) if p.is_file())
    if not candidates:
        raise ToolkitError(f"missing file {f.name} (expected {f.path})", path=str(folder))
    preferred = [p for p in candidates if p.parent.name == f.variant] or candidates
    for p in preferred + [c for c in candidates if c not in preferred]:
        if sha256_file(p) == f.sha256:
            return p
    raise ToolkitError(f"SHA-256 mismatch for {f.name}: expected {f.sha256}, found {sha256_file(preferred[0])}",
                       path=str(preferred[0]))


def _download(f: DatasetFile, target: Path, progress: bool) -> Path:
    import httpx  # only the download path needs a network client

    if target.exists() and sha256_file(target) == f.sha256:
        return target
    h = hashlib.sha256()
    chunks = []
    done = 0
    try:
        with httpx.stream("GET", f.url, follow_redirects=True, timeout=60.0) as resp:
            if resp.status_code != 200:
                raise ToolkitError(f"download of {f.name} failed: HTTP {resp.status_code}", path=f.url)
            total = int(resp.headers.get("Content-Length") or f.bytes or 0)
            for chunk in resp.iter_bytes():
                h.update(chunk)
                chunks.append(chunk)
                done += len(chunk)
                if progress:
                    pct = f"{100 * done / total:5.1f}%" if total else f"{done} B"
                    sys.stderr.write(f"\r  {f.name}: {pct}")
    except httpx.HTTPError as exc:
        raise ToolkitError(f"download of {f.name} failed: {exc}", path=f.url) from None
    if progress:
        sys.stderr.write("\n")
    if h.hexdigest() != f.sha256:
        raise ToolkitError(f"SHA-256 mismatch for downloaded {f.name}: expected {f.sha256}, got {h.hexdigest()}",
                           path=f.url)
    atomic_write_bytes(target, b"".join(chunks))
    return target


def collect(dataset: Dataset, source: str | Path | None = None, *,
            progress: bool = True) -> list[tuple[DatasetFile, Path]]:
    """Every file of the dataset as a verified local path (nothing is imported yet)."""
    if source is not None:
        folder = Path(source)
        if not folder.is_dir():
            raise ToolkitError("no such folder", path=str(folder))
        return [(f, _find_local(folder, f)) for f in dataset.files]
    cache = default_cache() / dataset.name
    return [(f, _download(f, cache / f.path, progress)) for f in dataset.files]


def fetch(store: Store, dataset: Dataset, source: str | Path | None = None, *, progress: bool = True) -> list[Any]:
    """Collect, verify and import; the runs get the catalogue's model/variant/temperature/mode.

    The importer checks each file's digest again on the one copy of its bytes it parses, so a
    file changed between collection and import is refused, never imported."""
    files = collect(dataset, source, progress=progress)
    return import_files(store, [(path, {"model": f.model, "variant": f.variant, "temperature": f.temperature,
                                        "mode": f.mode, "expect_sha256": f.sha256}) for f, path in files])


def version_variant(f: DatasetFile, v: FileVersion) -> str:
    """The variant an earlier version of a file is imported under, beside the current one."""
    return f"{f.variant}@{v.commit[:7]}"


def _find_version(folder: Path, v: FileVersion) -> Path | None:
    """A file in ``folder`` with the version's digest, whatever its name (it usually shares its
    name with the current file); files of another size are not even read."""
    for p in sorted(folder.rglob("*")):
        if p.is_file() and (v.bytes is None or p.stat().st_size == v.bytes) and sha256_file(p) == v.sha256:
            return p
    return None


def fetch_versions(store: Store, dataset: Dataset, models: set[str], source: str | Path | None = None, *,
                   progress: bool = True, problems: list[str] | None = None) -> list[tuple[str, str]]:
    """Import the catalogued other versions of ``models``' files that are at hand (in
    ``source``, or downloaded when there is no source folder), each as its own run. Returns
    (run id, description) per version imported; one that cannot be had is named in
    ``problems`` and the others go on (they only explain failures, they never decide one)."""
    out = []
    for f in dataset.files:
        for v in f.versions if f.model in models else ():
            try:
                if source is not None:
                    path = _find_version(Path(source), v)
                    if path is None:
                        continue
                else:
                    as_file = DatasetFile(v.path, v.url, v.sha256, v.bytes, f.model, f.variant, f.temperature, f.mode)
                    path = _download(as_file, default_cache() / dataset.name / "versions" / v.commit / v.path,
                                     progress)
                opts = {"model": f.model, "variant": version_variant(f, v), "temperature": f.temperature,
                        "mode": f.mode, "expect_sha256": v.sha256}
                (result,) = import_files(store, [(path, opts)])
            except ToolkitError as exc:
                if problems is not None:
                    problems.append(f"version {v.describe()} could not be used: {exc}")
                continue
            out.append((result.run_id, f"{v.describe()} (run {result.run_id})"))
    return out
