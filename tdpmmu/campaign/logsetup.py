"""The campaign log: one rotating file written by the manager and every worker.

concurrent-log-handler's ``ConcurrentRotatingFileHandler`` takes a file lock
around each write and each rotation, so lines from many processes neither
interleave nor get lost when the file rotates (the standard library's
``RotatingFileHandler`` is safe only within one process).
"""

from __future__ import annotations

import logging
from pathlib import Path

from concurrent_log_handler import ConcurrentRotatingFileHandler

LOGGER = "tdpmmu.campaign"
_FORMAT = "%(asctime)s %(process)d %(levelname)s %(message)s"


def setup_log(path: str | None, max_bytes: int = 4 << 20, backups: int = 3) -> None:
    """Send this process's campaign log to ``path`` (``None``: no log).

    Called in the manager and as each worker's initializer; a handler
    inherited through fork is replaced, as each process needs its own.
    """
    log = logging.getLogger(LOGGER)
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    log.propagate = False
    if path is None:
        log.addHandler(logging.NullHandler())
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    h = ConcurrentRotatingFileHandler(path, "a", maxBytes=max_bytes, backupCount=backups)
    h.setFormatter(logging.Formatter(_FORMAT))
    log.addHandler(h)
    log.setLevel(logging.INFO)
