"""A one-line progress display on stderr: sent / cached / failed, rate and ETA."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, cached: int, *, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.total, self.cached = total, cached
        self.sent = self.failed = 0
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self.lock = threading.Lock()
        self._last_draw = 0.0

    def update(self, *, ok: bool) -> None:
        with self.lock:
            if ok:
                self.sent += 1
            else:
                self.failed += 1
            now = time.monotonic()
            if self.enabled and (now - self._last_draw > 0.2 or self.sent + self.failed == self.total):
                self._last_draw = now
                self._draw(now)

    def _draw(self, now: float) -> None:
        done = self.sent + self.failed
        elapsed = max(now - self.start, 1e-9)
        rate = done / elapsed
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        width = 30
        filled = int(width * done / self.total) if self.total else width
        bar = "#" * filled + "-" * (width - filled)
        eta_txt = f"{eta:5.0f}s" if eta != float("inf") else "    ?"
        self.stream.write(f"\r[{bar}] {done}/{self.total} sent {self.sent} cached {self.cached} failed {self.failed} "
                          f"{rate:6.1f}/s ETA {eta_txt}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.total:
            self.stream.write("\n")
            self.stream.flush()
