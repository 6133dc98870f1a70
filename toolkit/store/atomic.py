"""Atomic file writes: temp file in the target folder, fsync, rename, fsync the folder.

A reader (or a crash) can observe either the old state or the complete new file, never a
half-written one; leftover temp files start with ``.tmp-`` and are ignored by every reader.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

TMP_PREFIX = ".tmp-"


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, *, exclusive: bool = False) -> bool:
    """Write ``data`` to ``path`` atomically.

    With ``exclusive`` the rename becomes a hard link that fails when ``path`` exists, so
    two writers never overwrite each other; returns False when the file was already there.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
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
        else:
            os.replace(tmp, path)
        _fsync_dir(path.parent)
        return True
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
