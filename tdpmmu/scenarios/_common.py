"""Helpers the scenarios share: the seeded program generator and thread bookkeeping.

Kernel counterpart: the selftests' ``kvm_util`` helpers (``vm_create``,
``vcpu_run`` threads, ``pthread_join``).  Nothing here is model state.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

import ksync


def scenario_rng(name: str, variant: int) -> random.Random:
    """The random source of a scenario's program (sizes, delays, addresses).

    It is fixed by the scenario's ``variant`` parameter, not by the runtime
    seed, so that a schedule string alone replays a run (the seed only
    drives the scheduler).  Campaigns that want a different program per run
    pass ``variant=seed``.
    """
    if not isinstance(variant, int) or isinstance(variant, bool) or variant < 0:
        raise ValueError(f"scenario {name}: variant={variant!r} must be an integer >= 0")
    return random.Random(f"{name}:{variant}")


def run_all(jobs: Iterable[tuple[Callable[..., Any], tuple, str]]) -> None:
    """Start each ``(fn, args, name)`` as a managed thread and join them all.

    Kernel counterpart: the selftests' ``pthread_create`` / ``pthread_join``
    loop over vCPU threads.  A thread that raised re-raises here as
    ``ksync.ThreadFailed`` naming it.
    """
    rt = ksync.current_runtime()
    threads = [rt.spawn(fn, *args, name=name) for fn, args, name in jobs]
    for t in threads:
        rt.join(t)


def check_positive(scenario: str, **values: int) -> None:
    """Reject sizes a scenario cannot run with, naming the scenario and the parameter."""
    for key, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"scenario {scenario}: {key}={v!r} must be a positive integer")
