"""Waiting for works: flush, drain, cancel.

Kernel counterparts: ``flush_work()`` (``__flush_work``/``start_flush_work``),
``flush_workqueue()``, ``drain_workqueue()``, ``cancel_work()``,
``cancel_work_sync()`` (``__cancel_work_timer``, ``try_to_grab_pending``)
in kernel/workqueue.c.

Lockdep annotations, as the kernel (v5.19+) makes them:

* ``flush_work`` and ``cancel_work_sync`` acquire and release the work's map
  (even when the work is idle, so a lock-order problem shows up in a run
  where the work happened not to be queued); ``flush_work`` also takes the
  queue's map when the queue has ``max_active`` 1 or a rescuer, where
  flushing one work behind another of the same queue can deadlock;
* ``flush_workqueue`` (and so ``drain_workqueue``) acquires and releases
  the queue's map.

The worker holds both maps while a work runs, so "flush while holding a lock
the work takes" and "a work flushing its own queue" become lockdep cycles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ksync import current_thread, events, lock_map_acquire, lock_map_release, might_sleep

from . import ops
from .pool import start_worker
from .state import WorkqueueError, resolve_wq, site
from .work import Work

if TYPE_CHECKING:
    from .wq import Workqueue


class _Flusher:
    """One flush_workqueue() in progress: the queueings it still waits for."""

    __slots__ = ("name", "target", "remaining", "wq", "_waiters")

    def __init__(self, wq: Workqueue, target: int, remaining: int) -> None:
        self.name = f"flush of {wq.name}"
        self.wq = wq
        self.target = target
        self.remaining = remaining
        self._waiters: list = []

    def holders(self) -> list[Any]:
        return self.wq.busy_threads()


def _check_work(fn: str, work: Any) -> None:
    if not isinstance(work, Work):
        raise WorkqueueError(f"{fn}({work!r}): not a workqueue.Work (at {site()})")


def steal_pending_locked(rt: Any, work: Work) -> tuple[bool, Any]:
    """Kernel: try_to_grab_pending() — disarm or unqueue a pending work.  Context: rt.big.

    Returns (was pending, Worker to start or None).
    """
    if not work._pending:
        return False, None
    spawn = None
    key = work._timer_key
    if key is not None:
        work._timer_wq.pool.st.wheel.timers.remove(key)
        work._timer_key = None
        work._timer_wq = None
    else:
        spawn = work._pwq.unqueue_locked(rt, work)
    work._pending = False
    if work._waiters:
        rt.wake_all(work)
    return True, spawn


def _wait_work(rt: Any, t: Any, work: Work, what: str, from_cancel: bool) -> bool:
    """Wait until no queueing of ``work`` made before now is pending or running.

    Kernel: start_flush_work() + the barrier wait.  Returns False at once if
    the work is neither queued nor running (an armed timer does not count).
    """
    with rt.big:
        queued = work._pwq is not None
        if not queued and work._worker is None:
            return False
        target = work._seq
        wq = work._pwq if queued else work._run_wq
    if not from_cancel and (wq.max_active == 1 or wq.rescuer is not None):
        lock_map_acquire(wq.lockdep_map)
        lock_map_release(wq.lockdep_map)
    desc = f"{what} {work.name}"
    with rt.big:
        while ((work._pwq is not None and work._seq <= target)
               or (work._worker is not None and work._run_seq <= target)):
            rt.wait(t, work, desc)
    return True


def flush_work(work: Work) -> bool:
    """Kernel: flush_work() — wait for the last queueing of ``work`` to finish running.

    Returns True if it waited, False if the work was idle.  A queueing made
    after the flush began is not waited for.
    """
    _check_work("flush_work", work)
    might_sleep()
    return flush_work_nosleep(work)


def flush_work_nosleep(work: Work) -> bool:
    """``flush_work`` for callers that already said ``might_sleep`` (one report per call)."""
    t = current_thread()
    rt = t.rt
    lock_map_acquire(work.lockdep_map)
    lock_map_release(work.lockdep_map)
    if rt.listeners:
        rt.emit(t, events.CUSTOM, work, ("flush_work", work.name))
    waited = _wait_work(rt, t, work, "flush_work", from_cancel=False)
    if rt.listeners:
        # Even a flush that found the work idle is ordered after its last run
        # (the kernel's flush looks at the work under the pool lock).
        rt.emit(t, events.HB_ACQUIRE, work.done_hb, None)
    return waited


def cancel_work(work: Work) -> bool:
    """Kernel: cancel_work() / cancel_delayed_work() — remove a pending queueing, don't wait.

    Returns True if the work was pending (that queueing will not run).  A
    run already under way goes on.
    """
    _check_work("cancel_work", work)
    t = current_thread()
    rt = t.rt
    rt.point(t)
    with rt.big:
        if work._canceling:
            return False
        was, spawn = steal_pending_locked(rt, work)
    if spawn is not None:
        start_worker(rt, spawn)
    if rt.listeners and was:
        rt.emit(t, events.CUSTOM, work, ("cancel_work", work.name))
    return was


def cancel_work_sync(work: Work) -> bool:
    """Kernel: cancel_work_sync() / cancel_delayed_work_sync().

    Removes a pending queueing (or disarms the timer) and waits for a run
    under way to end; queueing the work meanwhile fails, so on return it is
    neither pending nor running.  Returns True if it was pending.
    """
    _check_work("cancel_work_sync", work)
    might_sleep()
    t = current_thread()
    rt = t.rt
    lock_map_acquire(work.lockdep_map)
    lock_map_release(work.lockdep_map)
    with rt.big:
        was, spawn = steal_pending_locked(rt, work)
        work._canceling += 1
    try:
        if spawn is not None:
            start_worker(rt, spawn)
        if rt.listeners:
            rt.emit(t, events.CUSTOM, work, ("cancel_work_sync", work.name))
        _wait_work(rt, t, work, "cancel_work_sync", from_cancel=True)
    finally:
        with rt.big:
            work._canceling -= 1
    if rt.listeners:
        rt.emit(t, events.HB_ACQUIRE, work.done_hb, None)
    return was


def _wait_inflight(rt: Any, t: Any, wq: Workqueue, desc: str) -> None:
    """Wait until every queueing of ``wq`` in flight now has run or been cancelled."""
    with rt.big:
        if wq.nr_inflight == 0:
            return
        f = _Flusher(wq, wq.qseq, wq.nr_inflight)
        wq.flushers.append(f)
        try:
            while f.remaining:
                rt.wait(t, f, desc)
        finally:
            wq.flushers.remove(f)


def flush_workqueue(wq: Any) -> None:
    """Kernel: flush_workqueue() — wait for every work queued on ``wq`` before the call.

    Works queued after the flush began (by anyone, including the works
    themselves) are not waited for.
    """
    might_sleep()
    t = current_thread()
    rt = t.rt
    _flush_workqueue(rt, t, resolve_wq(wq, rt))


def _flush_workqueue(rt: Any, t: Any, wq: Workqueue) -> None:
    lock_map_acquire(wq.lockdep_map)
    lock_map_release(wq.lockdep_map)
    if rt.listeners:
        rt.emit(t, events.CUSTOM, wq, ("flush_workqueue", wq.name))
    _wait_inflight(rt, t, wq, f"flush_workqueue {wq.name}")
    if rt.listeners:
        rt.emit(t, events.HB_ACQUIRE, wq, None)


def drain_workqueue(wq: Any) -> None:
    """Kernel: drain_workqueue() — flush until the queue is empty, chained works included.

    While it drains only works of ``wq`` itself may queue on it; anyone else
    gets a ``warn`` report and nothing queued.  A queue that still is not
    empty after 10 rounds (and every 100 after) is reported, as the kernel
    warns, since a work that requeues itself forever never lets it end.
    """
    might_sleep()
    t = current_thread()
    rt = t.rt
    drain_nosleep(rt, t, resolve_wq(wq, rt))


def drain_nosleep(rt: Any, t: Any, wq: Workqueue) -> None:
    """``drain_workqueue`` for callers that already said ``might_sleep``."""
    with rt.big:
        wq.nr_drainers += 1
    try:
        rounds = 0
        while True:
            _flush_workqueue(rt, t, wq)
            with rt.big:
                if wq.nr_inflight == 0:
                    break
            rounds += 1
            if rounds == 10 or (rounds % 100 == 0 and rounds <= 1000):
                rt.report("warn", f"drain_workqueue: {wq.name} isn't complete after "
                          f"{rounds} tries",
                          f"workqueue {wq.name}: drain_workqueue() isn't complete after "
                          f"{rounds} tries\n  at {site()}", thread=t, workqueue=wq.name)
    finally:
        with rt.big:
            wq.nr_drainers -= 1


def drain_quietly(wq: Workqueue) -> None:
    """Runtime exit: wait until ``wq`` runs dry, without lockdep or might_sleep events."""
    t = current_thread()
    rt = t.rt
    while True:
        _wait_inflight(rt, t, wq, f"exit drain of {wq.name}")
        with rt.big:
            if wq.nr_inflight == 0:
                return


# Work's methods and the runtime-exit hook sit below this file (see ops.py).
ops.bind(flush_work=flush_work, cancel_work=cancel_work, cancel_work_sync=cancel_work_sync,
         drain_quietly=drain_quietly)
