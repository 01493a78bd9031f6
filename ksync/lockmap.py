"""Pseudo-locks: lockdep maps that are not locks.

Kernel counterpart: ``struct lockdep_map`` with ``lock_map_acquire()`` /
``lock_map_release()`` — how the kernel's workqueue makes "flush a work while
holding a lock the work takes" visible to lockdep: the worker holds the
work's and the queue's maps while the work runs, and a flush acquires and
releases them.  A map never blocks; it only puts acquisitions on the spine
and in the thread's held locks, so lockdep sees the dependency.
"""

from __future__ import annotations

from . import events as ev
from .lockbase import LockBase, note_acquired, note_released, report_bad_unlock
from .thread import KThread, current_thread


class LockMap(LockBase):
    """A named lockdep map (``LockMap("(wq_completion)kvm")``)."""

    __slots__ = ()
    atomic = False
    kind = "lockdep_map"

    def holders(self) -> list[KThread]:
        return []

    def held_by(self, t: KThread, mode: str | None = None) -> bool:
        return any(lk is self for lk, _m in t.held)


def lock_map_acquire(m: LockMap, read: bool = False, recursive: bool = False) -> None:
    """Kernel: lock_map_acquire() / lock_map_acquire_read()."""
    t = current_thread()
    mode = ev.RECURSIVE_READER if recursive else ev.READER if read else ev.EXCLUSIVE
    rt = t.rt
    if rt.listeners:
        rt.emit(t, ev.ACQUIRE, m, mode)
    note_acquired(t, m, mode)
    if rt.listeners:
        rt.emit(t, ev.ACQUIRED, m, mode)


def lock_map_release(m: LockMap) -> None:
    """Kernel: lock_map_release()."""
    t = current_thread()
    modes = [mode for lk, mode in t.held if lk is m]
    if not modes:
        report_bad_unlock(t, m, "it is not held")
        return
    mode = modes[-1]
    note_released(t, m, mode)
    if t.rt.listeners:
        t.rt.emit(t, ev.RELEASE, m, mode)
