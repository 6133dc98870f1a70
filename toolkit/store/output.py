"""Where a command may write: the one output-path rule every writing command calls (report,
audit --report-dir, export, bundle, claims draft).

- Never inside a store. A report or an export written into ``runs/`` or ``objects/`` breaks the
  store (``verify`` and every reader then fail), so a path at or below any folder that holds a
  store is refused, whichever store the command reads.
- Never over what the command did not write. A file is replaced only when it is one of ours (a
  claims file, a bundle); a folder only when its marker lists every file in it: an earlier
  report's own files are replaced, and a folder holding anything else (a note, a thesis, a
  copied marker beside other files) is refused, not emptied.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import ToolkitError
from ..hashing import parse_json


def store_root_of(path: Path) -> Path | None:
    """The store folder ``path`` is in (or is), if any: the nearest folder, the path itself
    included, that has a store's layout (``is_store_folder``)."""
    from .store import is_store_folder

    here = Path(path).expanduser().absolute()
    for folder in [here, *here.parents]:
        if is_store_folder(folder):
            return folder
    return None


def refuse_inside_store(path: str | Path, writing: Path | None = None) -> Path:
    """``path`` as a Path, or a ToolkitError (exit 2) when it lies at or inside a store, or
    inside ``writing``, the store the command writes to (a store even before its first run)."""
    out = Path(path)
    root = store_root_of(out)
    if root is None and writing is not None:
        here, mine = out.expanduser().absolute(), writing.expanduser().absolute()
        root = mine if here == mine or mine in here.parents else None
    if root is not None:
        raise ToolkitError(f"{out}: inside the store at {root}; write outputs outside any store (a file there "
                           "would break it)")
    return out


def check_output_file(path: str | Path, *, ours: Callable[[Path], bool], writing: Path | None = None) -> Path:
    """A file output: outside any store (and outside ``writing``, the store the command writes
    to), and either new or a file ``ours`` recognises."""
    out = refuse_inside_store(path, writing)
    if out.is_dir():
        raise ToolkitError(f"{out} is a folder; give a file name")
    if out.exists() and not ours(out):
        raise ToolkitError(f"{out} exists and was not written by this command; choose a new file name")
    return out


def check_output_folder(path: str | Path, marker: str, *, legacy: Callable[[Path], bool] | None = None) -> Path:
    """A folder output that replaces an earlier one of its kind: outside any store, and new,
    empty, or holding only the files its ``marker`` lists (``legacy`` accepts a file of a
    marker written before markers listed their files)."""
    out = refuse_inside_store(path)
    if not out.exists():
        return out
    if not out.is_dir():
        raise ToolkitError(f"{out} exists and is not a folder; choose a new folder")
    present = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() or p.is_symlink())
    if not present:
        return out
    listed = marker_files(out / marker)
    if listed is None and legacy is not None and (out / marker).is_file():
        foreign = [p for p in present if p != marker and not legacy(Path(p))]
    elif listed is None:
        raise ToolkitError(f"{out} exists and holds files this command did not write; choose a new folder")
    else:
        foreign = [p for p in present if p != marker and p not in listed]
    if foreign:
        raise ToolkitError(f"{out} holds {foreign[0]!r}, which this command did not write; move it away or choose "
                           "a new folder (nothing was removed)")
    return out


def marker_text(kind: str, version: str, files: Iterable[str]) -> str:
    """A marker that names what wrote the folder and every file it wrote."""
    return json.dumps({"written_by": f"toolkit {version}", "kind": kind, "files": sorted(files)}, indent=1) + "\n"


def marker_files(path: Path) -> set[str] | None:
    """The files a marker lists, or None for a missing, legacy or unreadable marker."""
    try:
        doc = parse_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    return set(files)
