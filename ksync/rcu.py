"""RCU: read sections, grace periods, callbacks run by an RCU kthread.

Kernel counterparts: ``rcu_read_lock``/``rcu_read_unlock``,
``synchronize_rcu``, ``call_rcu``, ``rcu_barrier`` (kernel/rcu/tree.c).

A grace period waits for every read section that began before it to end —
and only those: a reader that starts after ``synchronize_rcu`` was called
does not hold it up.  Each outermost read section gets a serial number
(``t.rcu_gen``); the grace period snapshots (thread, serial) of the readers
present and waits until each has left that section.  ``call_rcu`` callbacks
run in queueing order on a lazily started kthread ("rcu_gp"), after a grace
period that began after they were queued, in softirq-like atomic context.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import events as ev
from .errors import KsyncError
from .lockbase import LockBase, note_acquired, note_released, report_bad_unlock
from .sleep import might_sleep
from .thread import KThread, current_thread


class _RcuLockMap(LockBase):
    """The lockdep map of RCU read sections (a recursive reader)."""

    __slots__ = ()
    atomic = False
    kind = "rcu"

    def holders(self) -> list[KThread]:
        return []


RCU_LOCK_MAP = _RcuLockMap("rcu_read_lock")


class RcuState:
    """Per-runtime RCU bookkeeping; fields under ``rt.big``."""

    name = "rcu"

    def __init__(self, rt: Any) -> None:
        self.rt = rt
        self._waiters: list[KThread] = []   # grace-period and barrier waiters
        self.section_seq = 0
        self.gp_seq = 0
        self.callbacks: list[tuple[Callable[..., Any], tuple]] = []
        self.queued = 0
        self.invoked = 0
        self.kthread: KThread | None = None
        self.kthread_q = _Queue()

    def gp_snapshot(self, me: KThread) -> list[tuple[KThread, int]]:
        return [(t, t.rcu_gen) for t in self.rt.threads if t.rcu_depth and t is not me]


class _Queue:
    name = "rcu callbacks"

    def __init__(self) -> None:
        self._waiters: list[KThread] = []


def _state(rt: Any) -> RcuState:
    return rt.service("rcu", lambda: RcuState(rt))


def rcu_read_lock() -> None:
    """Kernel: rcu_read_lock() — nests; only the outermost call starts a section."""
    t = current_thread()
    rt = t.rt
    if t.rcu_depth == 0:
        st = _state(rt)
        with rt.big:
            st.section_seq += 1
            t.rcu_gen = st.section_seq
    t.rcu_depth += 1
    note_acquired(t, RCU_LOCK_MAP, ev.RECURSIVE_READER)
    if rt.listeners:
        rt.emit(t, ev.ACQUIRE, RCU_LOCK_MAP, ev.RECURSIVE_READER)
        rt.emit(t, ev.ACQUIRED, RCU_LOCK_MAP, ev.RECURSIVE_READER)
    rt.point(t)


def rcu_read_unlock() -> None:
    """Kernel: rcu_read_unlock()."""
    t = current_thread()
    rt = t.rt
    if t.rcu_depth == 0:
        report_bad_unlock(t, RCU_LOCK_MAP, "no RCU read section is open")
        return
    t.rcu_depth -= 1
    note_released(t, RCU_LOCK_MAP, ev.RECURSIVE_READER)
    if rt.listeners:
        rt.emit(t, ev.RELEASE, RCU_LOCK_MAP, ev.RECURSIVE_READER)
    if t.rcu_depth == 0:
        st = _state(rt)
        with rt.big:
            if st._waiters:
                rt.wake_all(st)
    rt.point(t)


def synchronize_rcu() -> None:
    """Kernel: synchronize_rcu() — wait for all pre-existing read sections to end."""
    might_sleep()
    t = current_thread()
    rt = t.rt
    st = _state(rt)
    with rt.big:
        snap = st.gp_snapshot(t)
        while any(r.rcu_depth and r.rcu_gen == gen for r, gen in snap):
            rt.wait(t, st, "RCU grace period")
        st.gp_seq += 1
        seq = st.gp_seq
    if rt.listeners:
        rt.emit(t, ev.RCU_GP, st, seq)


def call_rcu(fn: Callable[..., Any], *args: Any) -> None:
    """Kernel: call_rcu() — run ``fn(*args)`` after a grace period, on the RCU kthread."""
    if not callable(fn):
        raise KsyncError(f"call_rcu({fn!r}): not callable")
    t = current_thread()
    rt = t.rt
    st = _state(rt)
    start = False
    with rt.big:
        st.callbacks.append((fn, args))
        st.queued += 1
        if st.kthread is None:
            start = True
            st.kthread = rt  # placeholder so only one starter spawns it
        else:
            rt.wake_all(st.kthread_q)
    if start:
        st.kthread = rt.spawn(_rcu_kthread, st, name="rcu_gp", daemon=True)
        rt.at_exit(lambda: rcu_barrier() if st.invoked < st.queued else None)
    rt.point(t)


def rcu_barrier() -> None:
    """Kernel: rcu_barrier() — wait until every callback queued so far has run."""
    might_sleep()
    t = current_thread()
    rt = t.rt
    st = _state(rt)
    with rt.big:
        target = st.queued
        while st.invoked < target:
            rt.wait(t, st, "rcu_barrier")


def _rcu_kthread(st: RcuState) -> None:
    t = current_thread()
    rt = t.rt
    while True:
        with rt.big:
            while not st.callbacks:
                if not rt.wait(t, st.kthread_q, "call_rcu work", idle=True) and rt.stopping:
                    return
            batch, st.callbacks = st.callbacks, []
        synchronize_rcu()
        for fn, args in batch:
            if rt.listeners:
                rt.emit(t, ev.RCU_CALLBACK, st, getattr(fn, "__qualname__", str(fn)))
            t.atomic += 1      # callbacks run in softirq context: no sleeping
            try:
                fn(*args)
            finally:
                t.atomic -= 1
            with rt.big:
                st.invoked += 1
                if st._waiters:
                    rt.wake_all(st)


class _Rcu:
    """``ksync.rcu``: ``with rcu:`` is a read section; methods mirror the kernel's calls."""

    read_lock = staticmethod(rcu_read_lock)
    read_unlock = staticmethod(rcu_read_unlock)
    synchronize = staticmethod(synchronize_rcu)
    call = staticmethod(call_rcu)
    barrier = staticmethod(rcu_barrier)

    def __enter__(self) -> None:
        rcu_read_lock()

    def __exit__(self, *exc: Any) -> None:
        rcu_read_unlock()

    @staticmethod
    def read_depth() -> int:
        return current_thread().rcu_depth


rcu = _Rcu()
