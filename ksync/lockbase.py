"""What every lock shares: the class name, held-lock bookkeeping, misuse reports.

Kernel counterpart: the lockdep map embedded in each lock
(``struct lockdep_map``) and the ``held_locks`` array of each task.  A lock's
``name`` is its lockdep class key: every ``RwLock("kvm->mmu_lock")`` is one
class however many VMs exist, as with the kernel's static keys.
"""

from __future__ import annotations

from typing import Any

from . import events as ev
from .errors import KsyncError
from .report import call_site, format_stack, user_stack
from .thread import KThread
from .thread import current_thread as _current


class LockBase:
    """Base of SpinLock, RwLock and Mutex.  Fields other than ``name`` are under ``rt.big``."""

    __slots__ = ("name", "subclass", "_waiters", "owner", "__weakref__")
    #: True for spinning locks: holding one is atomic context (no sleeping).
    atomic = True
    kind = "lock"

    def __init__(self, name: str, subclass: int = 0) -> None:
        if not isinstance(name, str) or not name:
            raise KsyncError(f"{type(self).__name__}(name={name!r}): a lock needs a class "
                             "name, e.g. RwLock('kvm->mmu_lock')")
        self.name = name
        self.subclass = subclass
        self._waiters: list[KThread] = []
        self.owner: KThread | None = None

    def holders(self) -> list[KThread]:
        return [self.owner] if self.owner is not None else []

    def held_by(self, t: KThread, mode: str | None = None) -> bool:
        return self.owner is t

    def reinit(self) -> None:
        """Kernel: spin_lock_init()/rwlock_init() again — a bug if the lock is held."""
        t = _current()
        with t.rt.big:
            busy = bool(self.holders())
        if busy:
            _misuse(t, self, "bad-unlock", "re-initialised while held")
            return
        self.owner = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def note_acquired(t: KThread, lock: LockBase, mode: str) -> None:
    """Record ``lock`` as held by ``t`` (the thread itself calls this)."""
    t.held.append((lock, mode))
    if lock.atomic:
        t.atomic += 1


def note_released(t: KThread, lock: LockBase, mode: str) -> None:
    held = t.held
    for i in range(len(held) - 1, -1, -1):
        if held[i][0] is lock:
            del held[i]
            break
    if lock.atomic:
        t.atomic -= 1


def _misuse(t: KThread, lock: Any, kind: str, what: str) -> None:
    rt = t.rt
    site = call_site()
    holders = ", ".join(h.name for h in lock.holders()) or "nobody"
    text = (f"=====================================\n"
            f"WARNING: bad unlock balance detected!\n"
            f"-------------------------------------\n"
            f"{t.name}/{t.tid} is trying to release lock ({lock.name}) at:\n  {site}\n"
            f"but {what} (held by {holders}).\n"
            f"stack:\n{format_stack(user_stack())}")
    rt.report(kind, f"{lock.name}: {what} at {site}", text, thread=t,
              lock=lock.name, site=site)


def report_bad_unlock(t: KThread, lock: Any, what: str) -> None:
    """Unlock of a lock not held (or held by another thread): report, leave state alone."""
    _misuse(t, lock, "bad-unlock", what)


def emit_lock(t: KThread, kind: str, lock: Any, mode: str) -> None:
    rt = t.rt
    if rt.listeners:
        rt.emit(t, kind, lock, mode)


EXCLUSIVE = ev.EXCLUSIVE
READER = ev.READER


class ExclusiveLock(LockBase):
    """One owner at a time: the shared body of SpinLock and Mutex."""

    __slots__ = ()

    def lock(self) -> None:
        t = _current()
        rt = t.rt
        rt.point(t)
        if rt.listeners:
            rt.emit(t, ev.ACQUIRE, self, EXCLUSIVE)
        with rt.big:
            if self.owner is not None:
                if rt.listeners:
                    rt.emit(t, ev.CONTENDED, self, EXCLUSIVE)
                while self.owner is not None:
                    rt.wait(t, self, f"{self.kind} {self.name}")
            self.owner = t
        note_acquired(t, self, EXCLUSIVE)
        if rt.listeners:
            rt.emit(t, ev.ACQUIRED, self, EXCLUSIVE)

    def trylock(self) -> bool:
        t = _current()
        rt = t.rt
        rt.point(t)
        with rt.big:
            if self.owner is not None:
                return False
            self.owner = t
        if rt.listeners:
            rt.emit(t, ev.ACQUIRE, self, EXCLUSIVE)
        note_acquired(t, self, EXCLUSIVE)
        if rt.listeners:
            rt.emit(t, ev.ACQUIRED, self, EXCLUSIVE)
        return True

    def unlock(self) -> None:
        t = _current()
        rt = t.rt
        with rt.big:
            if self.owner is not t:
                bad = "it is not held" if self.owner is None else "it is held by another thread"
            else:
                bad = ""
                self.owner = None
                if self._waiters:
                    rt.wake_all(self)
        if bad:
            report_bad_unlock(t, self, bad)
            return
        note_released(t, self, EXCLUSIVE)
        if rt.listeners:
            rt.emit(t, ev.RELEASE, self, EXCLUSIVE)
        rt.point(t)

    def is_locked(self) -> bool:
        return self.owner is not None

    def is_contended(self) -> bool:
        """Kernel: spin_is_contended() / mutex_is_locked() with waiters."""
        return bool(self._waiters)

    def __enter__(self) -> ExclusiveLock:
        self.lock()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.unlock()
