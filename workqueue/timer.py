"""Delayed works: a timer wheel that queues a DelayedWork when its delay expires.

Kernel counterparts: ``queue_delayed_work()`` (``__queue_delayed_work``),
``delayed_work_timer_fn()``, ``mod_delayed_work()``, ``flush_delayed_work()``
(kernel/workqueue.c) over the timer wheel (kernel/time/timer.c).

ksync has no timers, so each runtime gets one lazily started daemon kthread,
``wq_timer``, keeping armed works in a SortedList ordered by deadline.  It
sleeps until the earliest deadline with ``rt.wait(timeout_ns=...)`` — virtual
time in controlled mode (a run with a 10-second delay takes no real time),
wall time in free mode.  While timers are armed it waits as a *sleeping*
thread, not an idle one, because its timeout can still end a wait that
would otherwise look like a deadlock (a flush of a work not yet fired).
Arming, disarming and firing all happen under ``rt.big``, so a work is
never half-way between the wheel and its queue.

Field rules: all under ``rt.big``.
"""

from __future__ import annotations

from typing import Any

from sortedcontainers import SortedList

from ksync import current_thread, events, might_sleep

from . import ops
from .flush import (
    _check_work,
    cancel_work,
    cancel_work_sync,
    flush_work_nosleep,
    steal_pending_locked,
)
from .pool import start_worker
from .state import WorkqueueError, WqState, resolve_wq, site
from .work import DelayedWork
from .wq import is_chained_locked, report_refused


class TimerWheel:
    """The armed DelayedWorks of one runtime, soonest first."""

    name = "delayed-work timers"

    def __init__(self) -> None:
        self.timers: SortedList = SortedList()   # (deadline_ns, seq, dwork)
        self.seq = 0
        self.closed = False      # runtime exit: arming is refused, armed ones dropped
        self.thread: Any = None  # the wq_timer kthread (or True while it is being spawned)
        self._waiters: list = []

    def holders(self) -> list[Any]:
        return []


def _wheel_locked(st: WqState) -> TimerWheel:
    if st.wheel is None:
        st.wheel = TimerWheel()
    return st.wheel


def _check_delay(fn: str, dwork: Any, delay_ms: Any) -> int:
    if not isinstance(dwork, DelayedWork):
        raise WorkqueueError(f"{fn}(..., {dwork!r}): not a workqueue.DelayedWork (at {site()})")
    if not isinstance(delay_ms, int | float) or delay_ms < 0:
        raise WorkqueueError(f"{fn}(..., {dwork.name}, delay_ms={delay_ms!r}): "
                             f"a delay >= 0 in milliseconds (at {site()})")
    return int(delay_ms * 1_000_000)


def _arm_locked(rt: Any, wq: Any, dwork: DelayedWork, delay_ns: int) -> tuple[bool, Any]:
    """Kernel: __queue_delayed_work() with PENDING already set.  Context: rt.big.

    Returns (start the timer kthread?, Worker to start).  A zero delay
    queues at once, as the kernel does.
    """
    if delay_ns == 0:
        return False, wq.insert_locked(rt, dwork)
    wheel = _wheel_locked(wq.pool.st)
    if wheel.closed:
        dwork._pending = False
        return False, None
    wheel.seq += 1
    key = (rt.now_ns() + delay_ns, wheel.seq, dwork)
    wheel.timers.add(key)
    dwork._timer_key = key
    dwork._timer_wq = wq
    if wheel.timers[0] is key:
        rt.wake_all(wheel)      # the new timer is the soonest: re-aim the sleep
    if wheel.thread is None:
        wheel.thread = True
        return True, None
    return False, None


def _after_arm(rt: Any, wq: Any, start_timer: bool, spawn: Any) -> None:
    if spawn is not None:
        start_worker(rt, spawn)
    if start_timer:
        wheel = wq.pool.st.wheel
        th = rt.spawn(_timer_thread, wheel, name="wq_timer", daemon=True)
        with rt.big:
            wheel.thread = th


def _begin(fn: str, wq: Any, dwork: DelayedWork, delay_ms: float) -> tuple[Any, Any, Any, int]:
    """What queue_delayed_work and mod_delayed_work do before taking ``rt.big``.

    Checks the arguments, passes a scheduling point, and orders the caller's
    writes before the work's run (the kernel's pending-bit test is a full
    barrier).  Returns (thread, runtime, queue, delay in ns).
    """
    t = current_thread()
    rt = t.rt
    wq = resolve_wq(wq, rt)
    delay_ns = _check_delay(fn, dwork, delay_ms)
    rt.point(t)
    if rt.listeners:
        rt.emit(t, events.HB_RELEASE, dwork, None)
    return t, rt, wq, delay_ns


def queue_delayed_work(wq: Any, dwork: DelayedWork, delay_ms: float) -> bool:
    """Kernel: queue_delayed_work() — queue ``dwork`` on ``wq`` after ``delay_ms``.

    False if it was already pending (armed or queued).  The delay is
    virtual in controlled mode.  At runtime exit armed works are dropped
    and new arming is refused (False).
    """
    t, rt, wq, delay_ns = _begin("queue_delayed_work", wq, dwork, delay_ms)
    start_timer, spawn, queued = False, None, False
    with rt.big:
        if dwork._pending or dwork._canceling:
            return False
        refused = _refusal_locked(wq, t)
        if not refused:
            dwork._pending = True
            dwork._seq += 1
            start_timer, spawn = _arm_locked(rt, wq, dwork, delay_ns)
            queued = dwork._pending
    if refused:
        report_refused(rt, t, wq, dwork, refused)
        return False
    if rt.listeners and queued:
        # Before any worker starts, so a trace never shows the run first.
        rt.emit(t, events.CUSTOM, dwork, ("queue_delayed_work", wq.name, dwork.name, delay_ms))
    _after_arm(rt, wq, start_timer, spawn)
    return queued


def _refusal_locked(wq: Any, t: Any) -> str:
    if wq.destroyed:
        return "destroyed"
    if wq.nr_drainers and not is_chained_locked(wq, t):
        return "draining"
    return ""


def mod_delayed_work(wq: Any, dwork: DelayedWork, delay_ms: float) -> bool:
    """Kernel: mod_delayed_work() — (re)arm ``dwork`` to fire ``delay_ms`` from now.

    Whether it was armed, queued or idle, it ends up armed with the new
    delay (or queued at once for 0).  Returns True if it was pending before,
    False if it was idle — or if a cancel_*_sync is in progress, in which
    case nothing is armed.
    """
    t, rt, wq, delay_ns = _begin("mod_delayed_work", wq, dwork, delay_ms)
    start_timer, spawn0, spawn = False, None, None
    with rt.big:
        if dwork._canceling:
            return False
        refused = _refusal_locked(wq, t)
        was = False
        if not refused:
            was, spawn0 = steal_pending_locked(rt, dwork)
            dwork._pending = True
            dwork._seq += 1
            start_timer, spawn = _arm_locked(rt, wq, dwork, delay_ns)
    if refused:
        report_refused(rt, t, wq, dwork, refused)
        return False
    if rt.listeners:
        rt.emit(t, events.CUSTOM, dwork, ("mod_delayed_work", wq.name, dwork.name, delay_ms))
    if spawn0 is not None:
        start_worker(rt, spawn0)
    _after_arm(rt, wq, start_timer, spawn)
    return was


def flush_delayed_work(dwork: DelayedWork) -> bool:
    """Kernel: flush_delayed_work() — fire an armed timer now, then ``flush_work``."""
    _check_work("flush_delayed_work", dwork)
    might_sleep()
    t = current_thread()
    rt = t.rt
    spawn = fired = None
    why = ""
    with rt.big:
        key = dwork._timer_key
        if key is not None:
            wq = dwork._timer_wq
            wq.pool.st.wheel.timers.remove(key)
            dwork._timer_key = None
            dwork._timer_wq = None
            why = _refusal_locked(wq, t)
            if why:
                dwork._pending = False
                if dwork._waiters:
                    rt.wake_all(dwork)
            else:
                spawn = wq.insert_locked(rt, dwork)
                fired = wq
    if why:
        report_refused(rt, t, wq, dwork, why)
    if fired is not None and rt.listeners:
        rt.emit(t, events.CUSTOM, dwork, ("queue_work", fired.name, dwork.name))
    if spawn is not None:
        start_worker(rt, spawn)
    return flush_work_nosleep(dwork)


def cancel_delayed_work(dwork: DelayedWork) -> bool:
    """Kernel: cancel_delayed_work() — disarm or unqueue; does not wait for a running one."""
    _check_work("cancel_delayed_work", dwork)
    return cancel_work(dwork)


def cancel_delayed_work_sync(dwork: DelayedWork) -> bool:
    """Kernel: cancel_delayed_work_sync() — disarm or unqueue, then wait for a running one."""
    _check_work("cancel_delayed_work_sync", dwork)
    return cancel_work_sync(dwork)


def close_wheel(st: WqState) -> None:
    """Runtime exit: drop every armed timer and refuse new ones."""
    rt = st.rt
    with rt.big:
        wheel = _wheel_locked(st)
        wheel.closed = True
        for _deadline, _seq, dwork in list(wheel.timers):
            dwork._timer_key = None
            dwork._timer_wq = None
            dwork._pending = False
            if dwork._waiters:
                rt.wake_all(dwork)
        wheel.timers.clear()
        rt.wake_all(wheel)


def _timer_thread(wheel: TimerWheel) -> None:
    """Kernel: the timer softirq running delayed_work_timer_fn() for each expired work."""
    t = current_thread()
    rt = t.rt
    while True:
        refused = []
        spawns = []
        fired = []
        with rt.big:
            timers = wheel.timers
            while not timers or timers[0][0] > rt.now_ns():
                if timers:
                    rt.wait(t, wheel, "the next delayed-work timer",
                            timeout_ns=timers[0][0] - rt.now_ns())
                elif not rt.wait(t, wheel, "a delayed work to arm", idle=True) and rt.stopping:
                    return
            now = rt.now_ns()
            while timers and timers[0][0] <= now:
                _deadline, _seq, dwork = timers.pop(0)
                wq = dwork._timer_wq
                dwork._timer_key = None
                dwork._timer_wq = None
                # A timer is never chained work, so a draining queue refuses it too.
                why = _refusal_locked(wq, t)
                if why:
                    dwork._pending = False
                    if dwork._waiters:
                        rt.wake_all(dwork)
                    refused.append((wq, dwork, why))
                    continue
                fired.append((wq, dwork))
                w = wq.insert_locked(rt, dwork)
                if w is not None:
                    spawns.append(w)
        if rt.listeners:
            for wq, dwork in fired:
                rt.emit(t, events.CUSTOM, dwork, ("queue_work", wq.name, dwork.name))
        for w in spawns:
            start_worker(rt, w)
        for wq, dwork, why in refused:
            report_refused(rt, t, wq, dwork, why)


# DelayedWork's and Workqueue's methods and the runtime-exit hook sit below this file (ops.py).
ops.bind(queue_delayed_work=queue_delayed_work, mod_delayed_work=mod_delayed_work,
         flush_delayed_work=flush_delayed_work, close_wheel=close_wheel)
