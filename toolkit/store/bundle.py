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
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zlib import error as zlib_error

from .. import __version__
from ..errors import StoreCorrupt, ToolkitError
from ..hashing import canonical_json, parse_json, sha256_bytes
from .atomic import atomic_write_bytes
from .cache import CARRIED_KINDS, SUFFIX, ResultCache, decode, encode
from .manifest import DIGEST_RE, RunManifest, manifest_filename
from .output import check_output_file
from .store import Store

FORMAT = "toolkit-bundle/1"
INDEX = "bundle.json"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # ZIP's earliest date: no clock in the bytes


@dataclass
class BundleInfo:
    path: Path
    digest: str
    runs: list[str]
    members: dict[str, dict[str, Any]]


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
                 personas: dict[str, bytes] | None = None, cache: bool = False) -> BundleInfo:
    """Write ``runs`` of ``store`` (each segment's hash checked as it is read) as a bundle.
    ``personas`` maps a persona set's digest to its file's bytes; with ``cache``, the
    results-cache entries computed from these runs alone (intact ones, of the kinds `verify`
    recomputes: CARRIED_KINDS) travel too."""
    out = check_output_file(out, ours=is_bundle)
    if not runs:
        raise ToolkitError("nothing to bundle: the selection holds no run")
    files: dict[str, bytes] = {}
    for run in runs:
        m, segments = store.consistently(run, lambda m: _run_bytes(store, m))  # as the analysis reads
        files[f"store/runs/{manifest_filename(m.run_id)}"] = m.to_json().encode("utf-8")
        for digest, data in segments.items():
            files[f"store/objects/{digest[:2]}/{digest}.parquet"] = data
        digest = m.instrument["digest"]
        files[f"store/instruments/{digest}.json"] = (store.instruments_dir / f"{digest}.json").read_bytes()
    for digest, data in (personas or {}).items():
        files[f"personas/{digest}.json"] = data
    if cache:
        carried = {m.fingerprint for m in runs if m.fingerprint}
        for path, entry in ResultCache(store.root).entries():
            if entry is not None and entry.kind in CARRIED_KINDS and set(entry.runs) <= carried:
                files[f"store/cache/{path.parent.name}/{path.name}"] = encode(entry)
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


def _run_bytes(store: Store, m: RunManifest) -> tuple[RunManifest, dict[str, bytes]]:
    problems = store.verify_run(m)
    if problems:
        raise StoreCorrupt(f"run {m.run_id} is damaged ({problems[0]}); `toolkit verify` lists every problem")
    return m, {seg.object: store.read_segment_bytes(seg.object, m.run_id) for seg in m.segments}


# Limits of what a bundle member may be, before a byte of it is read. Segments are bounded by
# the size their run's manifest gives them, and every member is stored uncompressed (as
# ``write_bundle`` writes them), so no member can unpack to more than the bundle's own bytes.
MAX_INDEX_BYTES = 64 << 20
MAX_SMALL_MEMBER = 16 << 20  # a manifest, an instrument or a persona file
MAX_CACHE_MEMBER = 64 << 20  # a results-cache entry (one run's rows: a few kB)
CACHE_MEMBER = re.compile(r"^store/cache/([0-9a-f]{2})/\1[0-9a-f]{62}\.entry$")
_CHUNK = 1 << 20


def open_bundle(path: str | Path) -> tuple[Store, BundleInfo]:
    """The store inside a checked bundle, as a private read-only copy (removed at exit).

    Trusts nothing, reads nothing whole into memory: the index is parsed with limits; every
    member must be listed, stored uncompressed and unencrypted, of the size the index gives it;
    manifests are parsed first, and every other member must be something a run names
    (a segment at the size its manifest says, its instrument, or a persona file); the runs list
    must be the runs inside. Members are copied in chunks, hashed as they stream. The first
    problem is an error naming the bundle and the member (exit 1)."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise ToolkitError("no such bundle file", path=where)
    if not zipfile.is_zipfile(path):
        if path.suffix.lower() == ".zip":
            raise StoreCorrupt("not a readable bundle: not a complete ZIP archive (truncated or damaged?)",
                               path=where)
        raise ToolkitError("is a file but not a bundle (a store is a folder; `toolkit bundle` makes bundles)",
                           path=where)
    root = Path(tempfile.mkdtemp(prefix="toolkit-bundle-")) / path.stem
    atexit.register(shutil.rmtree, root.parent, True)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise StoreCorrupt(f"not a readable bundle: {exc}", path=where) from None
    try:
        with zf:
            info = _read_checked(zf, root, where)
    except (zipfile.BadZipFile, zlib_error, OSError, EOFError, ValueError) as exc:
        raise StoreCorrupt(f"not a readable bundle: {exc}", path=where) from None
    (root / "runs").mkdir(parents=True, exist_ok=True)
    store = Store(root)
    store.carried_personas = persona_files(root)
    return store, info


def _read_checked(zf: zipfile.ZipFile, root: Path, where: str) -> BundleInfo:
    entries = zf.infolist()
    names = [e.filename for e in entries]
    if len(names) != len(set(names)):
        raise StoreCorrupt("a member name appears twice", path=where)
    by_name = {e.filename: e for e in entries}
    for e in entries:
        if e.flag_bits & 0x1:
            raise StoreCorrupt(f"member {e.filename} is encrypted", path=where)
        if e.compress_type != zipfile.ZIP_STORED or e.compress_size != e.file_size:
            raise StoreCorrupt(f"member {e.filename} is compressed (method {e.compress_type}); bundle members are "
                               "stored as they are", path=where)
    if INDEX not in by_name:
        raise StoreCorrupt(f"no {INDEX}: not a toolkit bundle", path=where)
    index, members = _index(zf, by_name[INDEX], where)
    extra = sorted(set(names) - set(members) - {INDEX})
    if extra:
        raise StoreCorrupt(f"member {extra[0]} is not listed in {INDEX}", path=where)
    for name, meta in members.items():
        if name not in by_name:
            raise StoreCorrupt(f"member {name} is missing", path=where)
        if not _safe(name):
            raise StoreCorrupt(f"member {name} would be written outside the bundle's folders", path=where)
        if by_name[name].file_size != meta["bytes"]:  # checked before reading: no oversized member
            raise StoreCorrupt(f"member {name} does not have the size {INDEX} gives it", path=where)
    # the manifests first: they say which other members may exist, and how large
    manifests: list[RunManifest] = []
    for name in sorted(members):
        if name.startswith("store/runs/"):
            if members[name]["bytes"] > MAX_SMALL_MEMBER:
                raise StoreCorrupt(f"member {name} is larger than a run manifest can be", path=where)
            data = _copy(zf, by_name[name], members[name], _target(root, name), where)
            try:
                manifests.append(RunManifest.from_dict(parse_json(data)))
            except (ValueError, TypeError) as exc:
                raise StoreCorrupt(f"member {name} is not a run manifest ({str(exc)[:200]})", path=where) from None
    segment_sizes = {f"store/objects/{seg.object[:2]}/{seg.object}.parquet": seg.bytes
                     for m in manifests for seg in m.segments}
    instruments = {f"store/instruments/{m.instrument['digest']}.json" for m in manifests}
    runs = sorted(m.run_id for m in manifests)
    if index.get("runs") != runs:
        raise StoreCorrupt(f"member {INDEX}: its runs list is not the runs the bundle holds", path=where)
    for name in sorted(members):
        size = members[name]["bytes"]
        if name.startswith("store/runs/"):
            continue
        carried = bool(CACHE_MEMBER.match(name))
        if name in segment_sizes:
            if size != segment_sizes[name]:
                raise StoreCorrupt(f"member {name} does not have the size its run's manifest gives it", path=where)
        elif carried:
            if size > MAX_CACHE_MEMBER:
                raise StoreCorrupt(f"member {name} is larger than a results-cache entry can be", path=where)
        elif name in instruments or name.startswith("personas/"):
            if size > MAX_SMALL_MEMBER:
                raise StoreCorrupt(f"member {name} is larger than an instrument or persona file can be", path=where)
        else:
            raise StoreCorrupt(f"member {name} is named by no run in the bundle", path=where)
        data = _copy(zf, by_name[name], members[name], _target(root, name), where, keep=carried)
        if carried:
            _check_carried(data, name, {m.fingerprint for m in manifests}, where)
    return BundleInfo(Path(where), index["digest"], runs, members)


def _check_carried(data: bytes, name: str, fingerprints: set[str], where: str) -> None:
    """A carried results-cache entry must be intact and computed from runs the bundle holds."""
    try:
        entry = decode(data, Path(name).name.removesuffix(SUFFIX))
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreCorrupt(f"member {name} is not a results-cache entry ({exc})", path=where) from None
    if entry.kind not in CARRIED_KINDS:
        raise StoreCorrupt(f"member {name} is a results-cache entry of a kind a bundle does not carry "
                           f"({entry.kind!r}: `verify` cannot recompute it)", path=where)
    if not set(entry.runs) <= fingerprints:
        raise StoreCorrupt(f"member {name} is a results-cache entry of runs the bundle does not hold", path=where)


def _index(zf: zipfile.ZipFile, entry: zipfile.ZipInfo, where: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    if entry.file_size > MAX_INDEX_BYTES:
        raise StoreCorrupt(f"member {INDEX} is larger than a bundle index can be", path=where)
    try:
        raw = zf.read(entry)
    except (zipfile.BadZipFile, zlib_error, EOFError) as exc:
        raise StoreCorrupt(f"member {INDEX} cannot be read: {exc}", path=where) from None
    try:
        index = parse_json(raw)
        if not isinstance(index, dict) or index.get("format") != FORMAT:
            raise ValueError(f"format {index.get('format') if isinstance(index, dict) else None!r}")
        members = index.get("members")
        if not isinstance(members, dict):
            raise ValueError("'members' is not an object")
        for name, meta in members.items():
            if (not isinstance(meta, dict) or set(meta) != {"bytes", "sha256"} or isinstance(meta["bytes"], bool)
                    or not isinstance(meta["bytes"], int) or meta["bytes"] < 0 or not isinstance(meta["sha256"], str)
                    or not DIGEST_RE.match(meta["sha256"])):
                raise ValueError(f"member {name}: each member is {{bytes, sha256}}")
        runs = index.get("runs")
        if not isinstance(runs, list) or not all(isinstance(r, str) for r in runs):
            raise ValueError("'runs' is not a list of run ids")
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreCorrupt(f"member {INDEX} is not a bundle index ({str(exc)[:200]})", path=where) from None
    if sha256_bytes(canonical_json(members).encode("utf-8")) != index.get("digest"):
        raise StoreCorrupt(f"member {INDEX}: its member list does not match its digest", path=where)
    return index, members


def _target(root: Path, name: str) -> Path:
    return root.parent / name if name.startswith("personas/") else root / Path(name).relative_to("store")


def _copy(zf: zipfile.ZipFile, entry: zipfile.ZipInfo, meta: dict[str, Any], target: Path, where: str,
          keep: bool = True) -> bytes:
    """Stream one member to ``target`` (read-only), hashing as it goes; its bytes are returned
    only with ``keep`` (manifests, already bounded). A mismatch names the member."""
    import hashlib

    h, size, kept = hashlib.sha256(), 0, []
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with zf.open(entry) as src, open(target, "wb") as dst:
            while chunk := src.read(_CHUNK):
                size += len(chunk)
                if size > meta["bytes"]:
                    break
                h.update(chunk)
                dst.write(chunk)
                if keep:
                    kept.append(chunk)
    except (zipfile.BadZipFile, zlib_error, EOFError) as exc:  # a damaged entry (its CRC): a damaged member
        target.unlink(missing_ok=True)
        raise StoreCorrupt(f"member {entry.filename} cannot be read: {exc}", path=where) from None
    if size != meta["bytes"] or h.hexdigest() != meta["sha256"]:
        target.unlink(missing_ok=True)
        raise StoreCorrupt(f"member {entry.filename} does not match its SHA-256 in {INDEX}", path=where)
    os.chmod(target, 0o444)
    return b"".join(kept)


def _safe(name: str) -> bool:
    parts = Path(name).parts
    return (len(parts) >= 2 and parts[0] in ("store", "personas") and ".." not in parts
            and not Path(name).is_absolute())


def persona_files(info_root: Path) -> dict[str, Path]:
    """The persona files a bundle carried, by digest (beside the opened store)."""
    folder = info_root.parent / "personas"
    return {p.stem: p for p in sorted(folder.glob("*.json"))} if folder.is_dir() else {}


def persona_payloads(runs: list[RunManifest], given: str | Path | None = None) -> dict[str, bytes]:
    """The persona files to carry, by digest: the shipped set a recorded run names, and the
    file given (for imported runs, which do not name theirs)."""
    from ..protocol.personas import load_personas, shipped_named

    sets = [pset for pset in map(shipped_named, (m.protocol for m in runs)) if pset is not None]
    if given is not None:  # (a set that is not shipped comes only this way)
        sets.append(load_personas(given))
    return {p.digest: (canonical_json({"name": p.name, "personas": list(p.personas)}) + "\n").encode("utf-8")
            for p in sets}
