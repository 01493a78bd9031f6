"""What watching plain objects costs (issue 13): reads of untracked, tracked,
freed and ``ksync.shared`` objects, and ``kfree`` with and without poisoning.

Run: ``python benchmarks/bench_watch.py [--n 200000] [--repeat 5] [--json]``.
Figures go to BENCHMARKS.md, section "Plain objects watched (issue 13)".

Every figure is per attribute read (``obj.level``) on the main thread of a
free-mode runtime with the ``uaf`` checker on (``races`` too for the shared
read), the best of ``--repeat`` runs (ten reads per turn of the loop, the
loop's cost included).
Targets (issue 13): an untracked object costs what it did (the class of an
untracked object is never touched); a tracked, live object's read is at
most 3x a plain read.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from typing import Any

import ksync


class Vm:
    def __init__(self) -> None:
        self.level = 4


class SlottedVm:
    __slots__ = ("level",)

    def __init__(self) -> None:
        self.level = 4


def _loop(obj: Any, n: int) -> float:
    """ns per read: ten reads per turn of the loop, so the loop's own cost is small."""
    t0 = time.perf_counter_ns()
    for _ in range(n // 10):
        obj.level; obj.level; obj.level; obj.level; obj.level  # noqa: B018, E702
        obj.level; obj.level; obj.level; obj.level; obj.level  # noqa: B018, E702
    return (time.perf_counter_ns() - t0) / (n // 10 * 10)


def _best(fn: Callable[[], float], repeat: int) -> float:
    return min(fn() for _ in range(repeat))


def measure(n: int, repeat: int) -> dict[str, float]:
    """Nanoseconds per read for each kind of object.

    The configurations take turns within each repeat, so a busy minute of
    the machine weighs on all of them alike; the best of each counts.
    """
    best: dict[str, float] = {}

    def note(key: str, ns: float) -> None:
        best[key] = min(best.get(key, float("inf")), ns)

    for _ in range(repeat):
        for cls in (Vm, SlottedVm):
            tag = cls.__name__
            note(f"{tag}: plain, no runtime", _loop(cls(), n))
            with ksync.Runtime(mode="free", checks=("uaf",)):
                plain = cls()
                tracked = ksync.track(cls(), "vm")
                note(f"{tag}: untracked, uaf on", _loop(plain, n))
                note(f"{tag}: tracked, live", _loop(tracked, n))
                ksync.kfree(tracked)
                with ksync.kasan_disabled():
                    note(f"{tag}: freed, kasan_disabled", _loop(tracked, n // 20))
                # After the first report, a further read is an event the checker drops.
                note(f"{tag}: freed, reported", _loop(tracked, n // 20))
            with ksync.Runtime(mode="free", checks=("races", "uaf")):
                shared = ksync.shared(cls(), "vm")
                note(f"{tag}: shared, races on", _loop(shared, n // 20))
    best.update(_kfree(n // 20, repeat))
    return best


def _kfree(n: int, repeat: int) -> dict[str, float]:
    def run(poisonable: bool) -> float:
        with ksync.Runtime(mode="free", checks=("uaf",)):
            objs = [ksync.track(Vm() if poisonable else (i,), "vm") for i in range(n)]
            t0 = time.perf_counter_ns()
            for o in objs:
                ksync.kfree(o)
            return (time.perf_counter_ns() - t0) / n
    return {"kfree, object poisoned (µs)": _best(lambda: run(True), repeat) / 1000,
            "kfree, immutable (not poisoned) (µs)": _best(lambda: run(False), repeat) / 1000}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    res = measure(a.n, a.repeat)
    if a.json:
        print(json.dumps({"python": platform.python_version(), "results": res}, indent=1))
        return
    print(f"python {platform.python_version()}, n={a.n}, best of {a.repeat}")
    for k, v in res.items():
        unit = "" if "µs" in k else " ns/read"
        print(f"{k:<40} {v:9.2f}{unit}")
    for tag in ("Vm", "SlottedVm"):
        plain = max(res[f"{tag}: plain, no runtime"], 1e-9)
        ratio = res[f"{tag}: tracked, live"] / plain
        untracked = res[f"{tag}: untracked, uaf on"] / plain
        print(f"{tag}: tracked live read / plain read = {ratio:.2f}x (target <= 3x); "
              f"untracked under the runtime / plain = {untracked:.2f}x")


if __name__ == "__main__":
    main()
