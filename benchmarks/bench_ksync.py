"""ksync micro-benchmarks: controlled-mode thread switch, free-mode lock, spine cost.

Run: ``python benchmarks/bench_ksync.py [--json]``.  Figures go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable

import ksync


class _Alternate(ksync.Strategy):
    """Always switch to another runnable thread: every point is a real handoff."""

    def choose(self, runnable, current, step):
        for t in runnable:
            if t is not current:
                return t
        return runnable[0]


def bench_switch(n: int = 20_000) -> float:
    """Nanoseconds per controlled-mode thread switch (OS-thread handoff)."""
    def body(rt: ksync.Runtime) -> None:
        def pinger() -> None:
            me = ksync.current_thread()
            for _ in range(n):
                rt.point(me)
        a = rt.spawn(pinger, name="a")
        b = rt.spawn(pinger, name="b")
        a.join()
        b.join()

    with ksync.Runtime(mode="controlled", strategy=_Alternate(), checks=(),
                       max_steps=None) as rt:
        t0 = time.perf_counter_ns()
        body(rt)
        dt = time.perf_counter_ns() - t0
        switches = rt.step
    return dt / switches


def _per_op(fn: Callable[[], None], n: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - t0) / n


def bench_free(n: int = 200_000) -> dict[str, float]:
    out = {}
    with ksync.Runtime(mode="free", checks=()) as rt:
        lk = ksync.SpinLock("bench")
        rw = ksync.RwLock("bench-rw")
        cell = ksync.Shared("cell", 0)
        atom = ksync.Atomic(0, "a")
        me = ksync.current_thread()
        out["empty loop"] = _per_op(lambda: None, n)
        out["spinlock lock+unlock (uncontended)"] = _per_op(lambda: (lk.lock(), lk.unlock()), n)
        out["rwlock read_lock+read_unlock"] = _per_op(lambda: (rw.read_lock(), rw.read_unlock()), n)
        out["atomic inc"] = _per_op(atom.inc, n)
        out["Shared.read (event, no checker)"] = _per_op(cell.read, n)
        out["rt.emit, no listener"] = _per_op(lambda: rt.emit(me, "read", cell, None), n)
        out["event test skipped (if rt.listeners)"] = _per_op(
            lambda: rt.listeners and rt.emit(me, "read", cell, None), n)
    rec = ksync.TraceRecorder()

    class Null(ksync.Checker):
        name = "null"

        def on_event(self, t, kind, obj, arg):
            pass

    with ksync.Runtime(mode="free", checks=(), listeners=[Null()]) as rt:
        cell = ksync.Shared("cell", 0)
        out["Shared.read, one no-op checker"] = _per_op(cell.read, n)
    del rec
    base = out["empty loop"]
    return {k: round(v - (0 if k == "empty loop" else base), 1) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    args = ap.parse_args()
    res = {"switch_ns": round(bench_switch(), 1), "free_ns_per_op": bench_free(),
           "python": platform.python_version(), "machine": platform.machine()}
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print(f"controlled-mode thread switch: {res['switch_ns'] / 1000:.1f} us")
    for k, v in res["free_ns_per_op"].items():
        print(f"{k:<42} {v:8.1f} ns")


if __name__ == "__main__":
    main()
