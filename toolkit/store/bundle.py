"""Store bundles: selected runs as one file an author hands to a reviewer.

A bundle is a ZIP archive (members stored, not recompressed: segments are compressed
Parquet already) laid out as a store under ``store/`` — run manifests, the segments they
name, the instruments — plus the persona files the runs name, when they are at hand, under
``personas/``. ``bundle.json`` lists every member with its SHA-256 and size, and its
``digest`` is the SHA-256 of that list (canonical JSON): one number names the whole content.
Members are written in sorted order with a fixed timestamp, so the same runs give the same
bytes.

Reading trusts nothing: every member is hashed against the list, the list against the
digest, and no member may be missing or extra; only then is the store inside opened, from a
private read-only copy. A bundle is never written to.
"""

from __future__ import annotations

import atexit
import io
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..errors import StoreCorrupt, ToolkitError
from ..hashing import canonical_json, sha256_bytes
from .atomic import atomic_write_bytes
from .manifest import RunManifest, manifest_filename
from .store import Store

FORMAT = "toolkit-bundle/1"
INDEX = "bundle.json"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # ZIP's earliest date: no clock in the bytes


@dataclass
class BundleInfo:
    path: Path
    digest: str
    runs: list[str]
    members: dict[str, dict]


def is_bundle(path: str | Path) -> bool:
    p = Path(path)
    if not p.is_file() or not zipfile.is_zipfile(p):
        return False
    with zipfile.ZipFile(p) as zf:
        return INDEX in zf.namelist()


def _member(name: str, data: bytes) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name, FIXED_TIME)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info, data


def write_bundle(store: Store, runs: list[RunManifest], out: str | Path, *,
                 personas: dict[str, bytes] | None = None) -> BundleInfo:
    """Write ``runs`` of ``store`` (each segment's hash checked as it is read) as a bundle.
    ``personas`` maps a persona set's digest to its file's bytes."""
    out = Path(out)
    if not runs:
        raise ToolkitError("nothing to bundle: the selection holds no run")
    files: dict[str, bytes] = {}
    for m in runs:
        problems = store.verify_run(m)
        if problems:
            raise StoreCorrupt(f"run {m.run_id} is damaged ({problems[0]}); `toolkit verify` lists every problem")
        files[f"store/runs/{manifest_filename(m.run_id)}"] = m.to_json().encode("utf-8")
        for seg in m.segments:  # the bytes that go in, their hash checked as they are read
            name = f"store/objects/{seg.object[:2]}/{seg.object}.parquet"
            files[name] = store.read_segment_bytes(seg.object, m.run_id)
        digest = m.instrument["digest"]
        files[f"store/instruments/{digest}.json"] = (store.instruments_dir / f"{digest}.json").read_bytes()
    for digest, data in (personas or {}).items():
        files[f"personas/{digest}.json"] = data
    members = {name: {"bytes": len(data), "sha256": sha256_bytes(data)} for name, data in sorted(files.items())}
    digest = sha256_bytes(canonical_json(members).encode("utf-8"))
    run_ids = sorted(m.run_id for m in runs)
    index = {"format": FORMAT, "toolkit_version": __version__, "runs": run_ids, "members": members, "digest": digest}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in [(INDEX, (canonical_json(index) + "\n").encode("utf-8")), *sorted(files.items())]:
            info, payload = _member(name, data)
            zf.writestr(info, payload)
    atomic_write_bytes(out, buf.getvalue())
    return BundleInfo(out, digest, run_ids, members)


def check_bundle(path: str | Path) -> tuple[BundleInfo, dict[str, bytes]]:
    """Every member's bytes, after checking them all against the index and the index against
    its digest; the first problem is an error naming the member."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise ToolkitError("is a file but not a bundle (a store is a folder; `toolkit bundle` makes bundles)",
                           path=str(path))
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise StoreCorrupt(f"not a readable bundle: {exc}", path=str(path)) from None
    with zf:
        names = zf.namelist()
        if len(names) != len(set(names)):
            raise StoreCorrupt("a member name appears twice", path=str(path))
        if INDEX not in names:
            raise StoreCorrupt(f"no {INDEX}: not a toolkit bundle", path=str(path))
        try:
            index = json.loads(zf.read(INDEX))
            members = index["members"]
            if index.get("format") != FORMAT or not isinstance(members, dict):
                raise ValueError(f"format {index.get('format')!r}")
        except (ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
            raise StoreCorrupt(f"member {INDEX} is not a bundle index ({exc})", path=str(path)) from None
        if sha256_bytes(canonical_json(members).encode("utf-8")) != index.get("digest"):
            raise StoreCorrupt(f"member {INDEX}: its member list does not match its digest", path=str(path))
        extra = sorted(set(names) - set(members) - {INDEX})
        if extra:
            raise StoreCorrupt(f"member {extra[0]} is not listed in {INDEX}", path=str(path))
        data: dict[str, bytes] = {}
        for name, meta in members.items():
            if name not in names:
                raise StoreCorrupt(f"member {name} is missing", path=str(path))
            if not _safe(name):
                raise StoreCorrupt(f"member {name} would be written outside the bundle's folders", path=str(path))
            if zf.getinfo(name).file_size != meta.get("bytes"):  # checked before reading: no oversized member
                raise StoreCorrupt(f"member {name} does not have the size {INDEX} gives it", path=str(path))
            try:
                blob = zf.read(name)
            except (zipfile.BadZipFile, OSError) as exc:  # a damaged entry (its CRC) is a damaged member
                raise StoreCorrupt(f"member {name} cannot be read: {exc}", path=str(path)) from None
            if len(blob) != meta.get("bytes") or sha256_bytes(blob) != meta.get("sha256"):
                raise StoreCorrupt(f"member {name} does not match its SHA-256 in {INDEX}", path=str(path))
            data[name] = blob
    return BundleInfo(path, index["digest"], list(index.get("runs", [])), members), data


def _safe(name: str) -> bool:
    parts = Path(name).parts
    return (len(parts) >= 2 and parts[0] in ("store", "personas") and ".." not in parts
            and not Path(name).is_absolute())


def open_bundle(path: str | Path) -> tuple[Store, BundleInfo]:
    """The store inside a checked bundle, as a private read-only copy (removed at exit)."""
    info, data = check_bundle(path)
    root = Path(tempfile.mkdtemp(prefix="toolkit-bundle-")) / Path(path).stem
    atexit.register(shutil.rmtree, root.parent, True)
    for name, blob in data.items():
        target = root.parent / name if name.startswith("personas/") else root / Path(name).relative_to("store")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob)
        os.chmod(target, 0o444)
    (root / "runs").mkdir(parents=True, exist_ok=True)
    return Store(root), info


def persona_files(info_root: Path) -> dict[str, Path]:
    """The persona files a bundle carried, by digest (beside the opened store)."""
    folder = info_root.parent / "personas"
    return {p.stem: p for p in sorted(folder.glob("*.json"))} if folder.is_dir() else {}


def persona_payloads(runs: list[RunManifest], given: str | Path | None = None) -> dict[str, bytes]:
    """The persona files to carry, by digest: the shipped set a recorded run names, and the
    file given (for imported runs, which do not name theirs)."""
    from ..persona_sets import load_personas, shipped_named

    sets = [pset for pset in map(shipped_named, (m.protocol for m in runs)) if pset is not None]
    if given is not None:  # (a set that is not shipped comes only this way)
        sets.append(load_personas(given))
    return {p.digest: (canonical_json({"name": p.name, "personas": list(p.personas)}) + "\n").encode("utf-8")
            for p in sets}
