"""Checker overhead: a reference workload with each checker on, as a ratio to none.

Run: ``python benchmarks/bench_checkers.py [--threads 4] [--iters 2000]
[--repeat 3] [--modes free,controlled] [--json]``.  Figures go to
BENCHMARKS.md, section "Checkers (issue 5)".

The workload is what a model thread does between two interesting moments:
``--threads`` managed threads, each looping ``--iters`` times over

* a spinlock around a read-modify-write of a shared ``ksync.Shared`` counter,
* ``atomic_inc`` on a shared ``ksync.Atomic``,
* ``refcount_inc`` / ``refcount_dec_and_test`` on a shared ``ksync.Refcount``,
* a read section of a shared rwlock reading a ``Shared`` that main wrote
  before spawning, and an instrumented field access (``check_access``) on a
  tracked object,
* a write to the thread's own ``Shared``.

That is 5 lock operations, 3 atomic/refcount operations and 5 instrumented
accesses per iteration.  Each configuration runs ``--repeat`` times, the
configurations taking turns, and the best wall time and the best process CPU
time count (the machine is shared; the minimum is the least disturbed run,
and CPU time is less sensitive to other processes than wall time).  The
target ratios (issue 5, on wall time): lockdep <= 3x, races <= 10x, all
checkers together <= 15x.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Iterable

import ksync

#: Targets from issue 5, by configuration name.
TARGETS = {"lockdep": 3.0, "races": 10.0, "all": 15.0}
CONFIGS: dict[str, tuple[str, ...] | None] = {
    "none": (),
    "lockdep": ("lockdep",),
    "races": ("races",),
    "uaf": ("uaf",),
    "refcount": ("refcount",),
    "atomic_sleep": ("atomic_sleep",),
    "hung": ("hung",),
    "all": None,
}


class _Obj:
    """A tracked object with a field the workload touches (like a root's count)."""

    def __init__(self) -> None:
        self.count = 0


def workload(rt: ksync.Runtime, threads: int, iters: int) -> None:
    """The reference workload (see the module docstring); runs on the main thread."""
    lock = ksync.SpinLock("bench->lock")
    rw = ksync.RwLock("bench->rwlock")
    counter = ksync.Shared("bench->counter", 0)
    config = ksync.Shared("bench->config", 0)
    atom = ksync.Atomic(0, "bench->atomic")
    ref = ksync.Refcount(1, "bench->refcount")
    obj = ksync.track(_Obj(), "bench object")
    config.write(42)

    def body(i: int) -> None:
        mine = ksync.Shared(f"bench->private[{i}]", 0)
        for n in range(iters):
            with lock:
                counter.write(counter.read() + 1)
            atom.inc()
            ref.inc()
            ref.dec_and_test()
            with rw.read():
                config.read()
                ksync.check_access(obj, "count")
            mine.write(n)

    ts = [rt.spawn(body, i, name=f"bench-{i}") for i in range(threads)]
    for t in ts:
        t.join()
    if counter.peek() != threads * iters:
        raise AssertionError(f"lost updates: {counter.peek()} != {threads * iters}")


def time_once(mode: str, checks: Iterable[str] | None, threads: int, iters: int,
              seed: int) -> tuple[float, float, int]:
    """(wall seconds, process CPU seconds, reports) of one run of the workload."""
    c0, w0 = time.process_time(), time.perf_counter()
    with ksync.Runtime(mode=mode, seed=seed, checks=checks, max_steps=None) as rt:
        workload(rt, threads, iters)
    return time.perf_counter() - w0, time.process_time() - c0, len(rt.reports)


def run(modes: list[str], threads: int, iters: int, repeat: int) -> dict:
    """Best wall and CPU time per configuration; configurations take turns
    within each repetition so that a change in machine load hits them alike."""
    out: dict = {"threads": threads, "iters": iters, "repeat": repeat,
                 "python": platform.python_version(), "machine": platform.machine(),
                 "modes": {}}
    for mode in modes:
        rows = {name: {"seconds": float("inf"), "cpu_seconds": float("inf"), "reports": 0}
                for name in CONFIGS}
        for seed in range(repeat):
            for name, checks in CONFIGS.items():
                wall, cpu, nrep = time_once(mode, checks, threads, iters, seed)
                row = rows[name]
                row["seconds"] = min(row["seconds"], wall)
                row["cpu_seconds"] = min(row["cpu_seconds"], cpu)
                row["reports"] = max(row["reports"], nrep)
        base, cbase = rows["none"]["seconds"], rows["none"]["cpu_seconds"]
        for name, row in rows.items():
            row["seconds"] = round(row["seconds"], 4)
            row["cpu_seconds"] = round(row["cpu_seconds"], 4)
            row["ratio"] = round(row["seconds"] / base, 2)
            row["cpu_ratio"] = round(row["cpu_seconds"] / cbase, 2)
            if name in TARGETS:
                row["target"] = TARGETS[name]
                row["met"] = row["ratio"] <= TARGETS[name]
        out["modes"][mode] = rows
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--modes", default="free,controlled")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    args = ap.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in ksync.runtime.MODES]
    if bad or args.threads < 1 or args.iters < 1 or args.repeat < 1:
        ap.error(f"bad arguments: modes {bad or 'ok'}; threads, iters and repeat must be >= 1")
    res = run(modes, args.threads, args.iters, args.repeat)
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print(f"{args.threads} threads x {args.iters} iterations, best of {args.repeat}")
    for mode, rows in res["modes"].items():
        print(f"\nmode={mode}")
        print(f"{'checks':<14}{'wall s':>9}{'ratio':>8}{'cpu s':>9}{'ratio':>8}"
              f"{'target':>8}  reports")
        for name, row in rows.items():
            target = f"<={row['target']:g}x" if "target" in row else ""
            flag = "" if row.get("met", True) else "  MISSED"
            print(f"{name:<14}{row['seconds']:>9.3f}{row['ratio']:>7.2f}x"
                  f"{row['cpu_seconds']:>9.3f}{row['cpu_ratio']:>7.2f}x{target:>8}  "
                  f"{row['reports']}{flag}")


if __name__ == "__main__":
    main()
