"""The campaign's progress line on stderr: runs done, runs/s, findings, time left.

On a terminal the line is redrawn in place at most ten times a second; into a
file or pipe one line is written every few seconds, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``update(done, findings)`` as results arrive; ``close()`` once at the end."""

    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool = True,
                 width: int = 24) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.monotonic()
        self._last = time.monotonic()
        self._line = ""

    def render(self, done: int, findings: int) -> str:
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        rate = done / elapsed
        frac = done / self.total if self.total else 1.0
        fill = int(frac * self.width)
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        eta_s = f"{eta:5.0f}s" if eta != float("inf") else "    ?"
        return (f"[{'#' * fill}{'.' * (self.width - fill)}] {done}/{self.total} runs  "
                f"{rate:6.1f} runs/s  findings {findings}  eta {eta_s}")

    def update(self, done: int, findings: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < (0.1 if self.tty else 5.0):
            return
        self._last = now
        self._line = self.render(done, findings)
        if self.tty:
            self.stream.write("\r" + self._line)
        else:
            self.stream.write(self._line + "\n")
        self.stream.flush()

    def close(self, done: int, findings: int) -> None:
        if not self.enabled:
            return
        line = self.render(done, findings)
        self.stream.write(("\r" + line + "\n") if self.tty else (line + "\n"))
        self.stream.flush()
