"""spinlock_t: an exclusive lock whose holder is in atomic context.

Kernel counterpart: ``spin_lock``/``spin_unlock`` (include/linux/spinlock.h).
Nothing may sleep while one is held; in free mode a waiter parks on a
condition rather than burning the GIL, which changes timing, not semantics.
"""

from __future__ import annotations

from .lockbase import ExclusiveLock


class SpinLock(ExclusiveLock):
    """``with lock:`` or ``lock.lock()``/``lock.unlock()``/``lock.trylock()``.

    Cost: one ``rt.big`` round trip per operation when uncontended.
    """

    __slots__ = ()
    atomic = True
    kind = "spinlock"
