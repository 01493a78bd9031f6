"""Shared helpers for the workqueue tests: both modes, several seeds, bounded waits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ksync
import workqueue as wqm

#: The calls that wait for a work: each takes the queue and the work (one of them is unused).
WAITS: dict[str, Callable[[Any, Any], Any]] = {
    "flush_work": lambda wq, w: wqm.flush_work(w),
    "flush_workqueue": lambda wq, w: wqm.flush_workqueue(wq),
    "cancel_work_sync": lambda wq, w: wqm.cancel_work_sync(w),
    "drain_workqueue": lambda wq, w: wqm.drain_workqueue(wq),
}

CONTROLLED_SEEDS = range(5)
FREE_RUNS = range(2)


def cases() -> list[tuple[str, int]]:
    """(mode, seed) pairs: several controlled seeds and a few free-mode runs."""
    return [("controlled", s) for s in CONTROLLED_SEEDS] + [("free", s) for s in FREE_RUNS]


def run(body: Callable[[ksync.Runtime], Any], mode: str, seed: int,
        checks: tuple[str, ...] | None = (), **kw: Any) -> tuple[ksync.Runtime, Any]:
    """Enter a runtime (no checker unless asked), call ``body(rt)`` on main, return both.

    Free-mode runs after the first shake interleavings with a little noise.
    """
    if mode == "free" and seed:
        kw.setdefault("noise", 0.05)
    kw.setdefault("max_steps", 2_000_000)
    box: list[Any] = [None]
    with ksync.Runtime(mode=mode, seed=seed, checks=checks, **kw) as rt:
        box[0] = body(rt)
    return rt, box[0]


def kinds(rt: ksync.Runtime) -> list[str]:
    return [r.kind for r in rt.reports]


def until(pred: Callable[[], bool], what: str, polls: int = 20_000) -> None:
    """Wait (sleeping 0.1 ms at a time, virtual in controlled mode) until ``pred()``.

    The bound is on the number of polls, generous enough for a loaded
    machine; it only turns a hang into a failure naming what never happened.
    """
    for _ in range(polls):
        if pred():
            return
        ksync.msleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


def blocked_in(t: ksync.KThread, desc: str) -> Callable[[], bool]:
    """A predicate: thread ``t`` is parked in a wait whose description starts with ``desc``."""
    return lambda: t.blocked_on is not None and t.wait_desc.startswith(desc)
