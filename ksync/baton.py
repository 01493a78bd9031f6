"""The baton a controlled run hands from thread to thread.

Kernel counterpart: the context switch itself (``switch_to``); here one
managed thread gives the CPU to the next by waking it and blocking.  The
baton is an ``eventfd`` where Linux has one: ``os.eventfd_write`` and
``os.eventfd_read`` run without the GIL, so the woken thread can take the
GIL as soon as the giver blocks.  With a ``threading.Lock`` the woken
thread first contends for the GIL the giver still holds; on one core that
is about 2.5x slower per handoff (a reference run makes ~190 of them).
Elsewhere the baton is that lock.

Rules: ``give`` is called once per ``take`` (the scheduler pairs them), so
an eventfd's count is 0 or 1 and a baton is idle between uses.  ``close``
only when no thread can touch the baton any more.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from functools import partial

_EVENTFD = hasattr(os, "eventfd")


class Baton:
    """``give()`` lets the owner of the baton run; ``take()`` waits for that."""

    __slots__ = ("give", "take", "_fd")

    def __init__(self) -> None:
        self._fd = -1
        self.give: Callable[[], object]
        self.take: Callable[[], object]
        if _EVENTFD:
            self._fd = fd = os.eventfd(0, os.EFD_CLOEXEC)
            self.give = partial(os.eventfd_write, fd, 1)
            self.take = partial(os.eventfd_read, fd)
        else:
            lock = threading.Lock()
            lock.acquire()
            self.give = lock.release
            self.take = lock.acquire

    def close(self) -> None:
        """Free the eventfd (idempotent)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        # A runtime that was never exited (an exception in a test's setup)
        # must not leak descriptors; closing twice is harmless.
        self.close()
