"""Error types shared by every stage.

One exception class for "the user gave us something wrong" lets the CLI map it to a single
clear message and exit code 2, while genuine bugs still surface as tracebacks.
"""

from __future__ import annotations

from typing import Any


class ToolkitError(Exception):
    """Bad input or bad selection: printed as one line, exit code 2."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        self.path = path
        self.line = line
        self.reason = message
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)

    def __reduce__(self) -> tuple[Any, ...]:
        """Keep path and line when the error crosses a process boundary (import workers)."""
        return (_rebuild, (type(self), self.reason, self.path, self.line))


def _rebuild(cls: type[ToolkitError], message: str, path: str | None, line: int | None) -> ToolkitError:
    return cls(message, path=path, line=line)


class StoreCorrupt(ToolkitError):
    """The store failed an integrity check (verify reports these, exit code 1)."""

    exit_code = 1


class WorkerLost(ToolkitError):
    """A worker process died before it finished (killed, out of memory): nothing was written,
    exit code 1."""

    exit_code = 1
