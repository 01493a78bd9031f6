"""Sleeping and rescheduling: ``might_sleep``, ``cond_resched``, ``msleep``.

Kernel counterparts: ``might_sleep()`` (the annotation the sleep-in-atomic
checker listens for), ``cond_resched()``, ``need_resched()``, ``msleep()``.
In controlled mode sleeping advances the virtual clock; in free mode it is
real time.
"""

from __future__ import annotations

import time

from . import events as ev
from .errors import KsyncError
from .thread import current_thread


def might_sleep() -> None:
    """Annotate that the caller may sleep here; a scheduling point.

    Kernel: might_sleep() — with the sleep-in-atomic checker on, calling it
    with a spinning lock held or inside an RCU read section is a report.
    """
    t = current_thread()
    rt = t.rt
    if rt.listeners:
        rt.emit(t, ev.MIGHT_SLEEP, None, None)
    rt.point(t)


def need_resched() -> bool:
    """Kernel: need_resched() — another thread wants this CPU."""
    t = current_thread()
    return t.rt.need_resched(t)


def cond_resched() -> bool:
    """Kernel: cond_resched() — give up the CPU if a reschedule is due.

    Returns True if the thread yielded.  Like the kernel's, it must not be
    called in atomic context (it is a might-sleep point).
    """
    t = current_thread()
    rt = t.rt
    if rt.listeners:
        rt.emit(t, ev.MIGHT_SLEEP, None, "cond_resched")
    due = rt.need_resched(t)
    if rt.controlled:
        rt.point(t)
    elif due:
        time.sleep(0)
    t.last_resched = time.monotonic()
    t.run_steps = 0
    return due


def msleep(ms: float) -> None:
    """Kernel: msleep() — sleep at least ``ms`` milliseconds (virtual in controlled mode)."""
    if ms < 0:
        raise KsyncError(f"msleep({ms!r}): a negative duration")
    t = current_thread()
    rt = t.rt
    if rt.listeners:
        rt.emit(t, ev.MIGHT_SLEEP, None, "msleep")
        rt.emit(t, ev.SLEEP, None, ms)
    rt.sleep_ns(t, int(ms * 1_000_000))


def usleep(us: float) -> None:
    """Kernel: usleep_range() with a zero range."""
    msleep(us / 1000.0)
