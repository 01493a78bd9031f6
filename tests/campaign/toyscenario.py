"""Toy scenarios registered for the length of a test (the model's scenarios evolve).

``toy_lost_update`` fails under some schedules, reproducibly; ``toy_flaky``
decides how many threads to start from ``os.urandom``, which the runtime
does not control, so its schedules do not replay.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import ksync
from tdpmmu.scenarios import SCENARIOS, Scenario

from .toys import lost_update


def _toy_lost_update(*, zap: str, bugs: frozenset[str], threads: int, spin: int) -> None:
    rt = ksync.current_runtime()
    lost_update(rt, threads)
    ticks = ksync.Atomic(0, name="ticks")
    for _ in range(spin):       # extra steps, to make a run last a little longer
        ticks.read()


def _toy_flaky(*, zap: str, bugs: frozenset[str]) -> None:
    rt = ksync.current_runtime()
    lost_update(rt, 2 + os.urandom(1)[0] % 2)


def _toy_crash(*, zap: str, bugs: frozenset[str]) -> None:
    os._exit(3)     # a worker process dying (OOM killer, a segfault in numpy)


TOYS = {
    "toy_lost_update": Scenario("toy_lost_update", "two threads lose an update",
                                _toy_lost_update, {"threads": 2, "spin": 0}),
    "toy_flaky": Scenario("toy_flaky", "starts an os.urandom-chosen number of threads",
                          _toy_flaky, {}),
    "toy_crash": Scenario("toy_crash", "kills the process running it", _toy_crash, {}),
}


def register() -> None:
    """Add the toys to the registry (idempotent; for subprocess drivers)."""
    for name, sc in TOYS.items():
        SCENARIOS.setdefault(name, sc)


@contextlib.contextmanager
def toy_scenarios() -> Iterator[None]:
    """The toys are registered inside the block and removed after it."""
    added = [n for n in TOYS if n not in SCENARIOS]
    register()
    try:
        yield
    finally:
        for n in added:
            SCENARIOS.pop(n, None)
