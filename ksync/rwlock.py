"""rwlock_t as x86's queued rwlock behaves in task context.

Kernel counterpart: ``read_lock``/``write_lock`` over qrwlock
(kernel/locking/qrwlock.c).  Readers share; a writer is exclusive; and once a
writer waits, new readers queue behind it — so a thread that re-takes the
lock for read while a writer waits deadlocks, as in the kernel.  Holding it
in either mode is atomic context.

State under ``rt.big``: ``owner`` (the writer), ``readers`` (one entry per
read acquisition), ``writers_waiting``.
"""

from __future__ import annotations

from typing import Any

from . import events as ev
from .lockbase import EXCLUSIVE, READER, LockBase, note_acquired, note_released, report_bad_unlock
from .sleep import cond_resched
from .thread import KThread, current_thread


class RwLock(LockBase):
    """``read_lock``/``read_unlock``/``write_lock``/``write_unlock``; ``with l.read():``."""

    __slots__ = ("readers", "writers_waiting")
    kind = "rwlock"

    def __init__(self, name: str, subclass: int = 0) -> None:
        super().__init__(name, subclass)
        self.readers: list[KThread] = []
        self.writers_waiting = 0

    # -- readers
    def read_lock(self) -> None:
        t = current_thread()
        rt = t.rt
        rt.point(t)
        if rt.listeners:
            rt.emit(t, ev.ACQUIRE, self, READER)
        with rt.big:
            if self.owner is not None or self.writers_waiting:
                if rt.listeners:
                    rt.emit(t, ev.CONTENDED, self, READER)
                # A waiting writer holds back new readers (qrwlock fairness).
                while self.owner is not None or self.writers_waiting:
                    rt.wait(t, self, f"rwlock {self.name} (read)")
            self.readers.append(t)
        note_acquired(t, self, READER)
        if rt.listeners:
            rt.emit(t, ev.ACQUIRED, self, READER)

    def read_trylock(self) -> bool:
        t = current_thread()
        rt = t.rt
        rt.point(t)
        with rt.big:
            if self.owner is not None or self.writers_waiting:
                return False
            self.readers.append(t)
        if rt.listeners:
            rt.emit(t, ev.ACQUIRE, self, READER)
        note_acquired(t, self, READER)
        if rt.listeners:
            rt.emit(t, ev.ACQUIRED, self, READER)
        return True

    def read_unlock(self) -> None:
        t = current_thread()
        rt = t.rt
        with rt.big:
            ok = t in self.readers
            if ok:
                self.readers.remove(t)
                if not self.readers and self._waiters:
                    rt.wake_all(self)
        if not ok:
            report_bad_unlock(t, self, "it is not held for read by this thread")
            return
        note_released(t, self, READER)
        if rt.listeners:
            rt.emit(t, ev.RELEASE, self, READER)
        rt.point(t)

    # -- writers
    def write_lock(self) -> None:
        t = current_thread()
        rt = t.rt
        rt.point(t)
        if rt.listeners:
            rt.emit(t, ev.ACQUIRE, self, EXCLUSIVE)
        with rt.big:
            if self.owner is not None or self.readers:
                if rt.listeners:
                    rt.emit(t, ev.CONTENDED, self, EXCLUSIVE)
                self.writers_waiting += 1
                try:
                    while self.owner is not None or self.readers:
                        rt.wait(t, self, f"rwlock {self.name} (write)")
                finally:
                    self.writers_waiting -= 1
            self.owner = t
        note_acquired(t, self, EXCLUSIVE)
        if rt.listeners:
            rt.emit(t, ev.ACQUIRED, self, EXCLUSIVE)

    def write_trylock(self) -> bool:
        t = current_thread()
        rt = t.rt
        rt.point(t)
        with rt.big:
            if self.owner is not None or self.readers:
                return False
            self.owner = t
        if rt.listeners:
            rt.emit(t, ev.ACQUIRE, self, EXCLUSIVE)
        note_acquired(t, self, EXCLUSIVE)
        if rt.listeners:
            rt.emit(t, ev.ACQUIRED, self, EXCLUSIVE)
        return True

    def write_unlock(self) -> None:
        t = current_thread()
        rt = t.rt
        with rt.big:
            ok = self.owner is t
            if ok:
                self.owner = None
                if self._waiters:
                    rt.wake_all(self)
        if not ok:
            report_bad_unlock(t, self, "it is not held for write by this thread")
            return
        note_released(t, self, EXCLUSIVE)
        if rt.listeners:
            rt.emit(t, ev.RELEASE, self, EXCLUSIVE)
        rt.point(t)

    # -- queries
    def holders(self) -> list[KThread]:
        """Threads a waiter depends on: the writer, the readers, and queued writers."""
        out: list[KThread] = [self.owner] if self.owner is not None else []
        for r in self.readers:
            if r not in out:
                out.append(r)
        for w in self._waiters:
            if w.wait_desc.endswith("(write)") and w not in out:
                out.append(w)
        return out

    def held_by(self, t: KThread, mode: str | None = None) -> bool:
        if mode == EXCLUSIVE:
            return self.owner is t
        if mode == READER:
            return t in self.readers
        return self.owner is t or t in self.readers

    def is_contended(self) -> bool:
        """Kernel: rwlock_is_contended() — someone is queued on the lock."""
        return bool(self._waiters)

    def read(self) -> _Guard:
        return _Guard(self.read_lock, self.read_unlock)

    def write(self) -> _Guard:
        return _Guard(self.write_lock, self.write_unlock)

    def cond_resched_read(self) -> bool:
        return cond_resched_rwlock_read(self)

    def cond_resched_write(self) -> bool:
        return cond_resched_rwlock_write(self)


class _Guard:
    __slots__ = ("_enter", "_exit")

    def __init__(self, enter: Any, exit_: Any) -> None:
        self._enter = enter
        self._exit = exit_

    def __enter__(self) -> None:
        self._enter()

    def __exit__(self, *exc: Any) -> None:
        self._exit()


def _cond_resched_rwlock(lock: RwLock, mode: str) -> bool:
    t = current_thread()
    rt = t.rt
    if not (rt.need_resched(t) or lock.is_contended()):
        return False
    if mode == READER:
        lock.read_unlock()
        cond_resched()
        lock.read_lock()
    else:
        lock.write_unlock()
        cond_resched()
        lock.write_lock()
    return True


def cond_resched_rwlock_read(lock: RwLock) -> bool:
    """Kernel: cond_resched_rwlock_read() — drop and retake when contended or resched is due."""
    return _cond_resched_rwlock(lock, READER)


def cond_resched_rwlock_write(lock: RwLock) -> bool:
    """Kernel: cond_resched_rwlock_write()."""
    return _cond_resched_rwlock(lock, EXCLUSIVE)
