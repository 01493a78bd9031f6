"""struct mutex: a sleeping exclusive lock.

Kernel counterpart: ``mutex_lock``/``mutex_unlock`` (kernel/locking/mutex.c).
Taking it may sleep, so it calls ``might_sleep`` first; holding it is not
atomic context.
"""

from __future__ import annotations

from .lockbase import ExclusiveLock
from .sleep import might_sleep


class Mutex(ExclusiveLock):
    """``with mutex:`` or ``mutex.lock()``/``mutex.unlock()``; only the owner may unlock."""

    __slots__ = ()
    atomic = False
    kind = "mutex"

    def lock(self) -> None:
        might_sleep()
        super().lock()
