"""Atomic file writes: temp file in the target folder, fsync, rename, fsync the folder.

A reader (or a crash) can observe either the old state or the complete new file, never a
half-written one; leftover temp files start with ``.tmp-`` and are ignored by every reader.
Files get the permissions the user's umask asks for (mkstemp alone would make them 0600), and
a failed write (disk full, read-only folder) leaves no temp file and no folder it created.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

TMP_PREFIX = ".tmp-"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_parent(folder: Path) -> Path | None:
    """Create ``folder`` (and missing parents); return the topmost folder created, if any."""
    created = None
    for parent in reversed([folder, *folder.parents]):
        if not parent.exists():
            created = created or parent
    folder.mkdir(parents=True, exist_ok=True)
    return created


def atomic_write_bytes(path: Path, data: bytes, *, exclusive: bool = False) -> bool:
    """Write ``data`` to ``path`` atomically.

    With ``exclusive`` the rename becomes a hard link that fails when ``path`` exists, so
    two writers never overwrite each other; returns False when the file was already there.
    """
    path = Path(path)
    created = _make_parent(path.parent)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), FILE_MODE)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
                tmp = None
        else:
            os.replace(tmp, path)
            tmp = None
        _fsync_dir(path.parent)
        return True
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:  # name the file (disk full, file too large)
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
        if created is not None:
            for folder in [path.parent, *path.parent.parents]:
                try:
                    folder.rmdir()  # only empty folders this call created
                except OSError:
                    break
                if folder == created:
                    break
        raise
