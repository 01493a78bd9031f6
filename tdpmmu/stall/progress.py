"""A progress bar on stderr for the stall series.

Kernel counterpart: none.  On a terminal the bar redraws in place; in a log
(CI, a pipe) each step is one line, so the log stays readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

_WIDTH = 24


class Progress:
    """``Progress(stream)(done, total, label)`` draws one step; call ``close()`` at the end."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.perf_counter()
        self._drawn = False

    def __call__(self, done: int, total: int, label: str) -> None:
        filled = _WIDTH * done // total if total else _WIDTH
        bar = "#" * filled + "." * (_WIDTH - filled)
        text = (f"tdpmmu stall [{bar}] {done}/{total} {time.perf_counter() - self.t0:6.1f}s "
                f"{label}")
        if self.tty:
            self.stream.write("\r\x1b[K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
