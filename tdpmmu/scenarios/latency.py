"""Latency without a clock: how long threads waited for ``mmu_lock``, in scheduling steps.

Kernel counterpart: what ``tdpmmu stall`` measures in wall time (the vCPU
stalls of the seed's report, the RCU stalls the two-pass zap fixed), here
counted in controlled-mode scheduling steps from a run's event trace, so
that a test can compare a buggy and a correct model without timing
thresholds.  A wait starts at a ``contended`` event on the lock and ends at
the same thread's ``acquired``; every step in between was taken by someone
else (the holder making progress, or others queued behind it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ksync import events as ev

from .max_guest_memory import stall_bound

MMU_LOCK = "kvm->mmu_lock"


@dataclass(frozen=True)
class LockWait:
    """One contended acquisition: who waited, in which mode, from which step, for how many."""

    thread: str
    mode: str
    start: int
    steps: int


def lock_waits(trace: Iterable[tuple], lock: str = MMU_LOCK) -> list[LockWait]:
    """Every contended acquisition of ``lock`` in a trace of ``(step, thread, kind, obj, arg)``.

    Cost: one pass over the trace.  A wait still open at the end of the
    trace (a run aborted by a deadlock) counts up to the last step.
    """
    open_waits: dict[str, tuple[int, str]] = {}
    out: list[LockWait] = []
    last = 0
    for step, thread, kind, obj, arg in trace:
        last = step
        if obj != lock:
            continue
        if kind == ev.CONTENDED:
            open_waits[thread] = (step, arg)
        elif kind == ev.ACQUIRED and thread in open_waits:
            start, mode = open_waits.pop(thread)
            out.append(LockWait(thread, mode, start, step - start))
    out.extend(LockWait(t, m, s, last - s) for t, (s, m) in open_waits.items())
    return out


def max_lock_wait(trace: Iterable[tuple], lock: str = MMU_LOCK, mode: str | None = None) -> int:
    """The longest wait for ``lock`` (in ``mode`` if given) in steps; 0 if never contended."""
    return max((w.steps for w in lock_waits(trace, lock) if mode is None or w.mode == mode),
               default=0)


def max_read_hold_while_writer_waits(trace: Iterable[tuple], lock: str = MMU_LOCK) -> int:
    """The longest a reader kept ``lock`` after a writer started waiting for it, in steps.

    This is what a zap that does not yield costs everyone else: qrwlock
    queues new readers behind the waiting writer, so every faulting vCPU
    waits as long as the writer does.  Cost: one pass over the trace.
    """
    holding: dict[str, int] = {}          # reader -> step it acquired
    writer_since: int | None = None       # a writer has waited since this step
    worst = 0
    for step, thread, kind, obj, arg in trace:
        if obj != lock:
            continue
        if kind == ev.ACQUIRED and arg == ev.READER:
            holding[thread] = step
        elif kind == ev.RELEASE and arg == ev.READER and thread in holding:
            held_from = holding.pop(thread)
            if writer_since is not None:
                worst = max(worst, step - max(held_from, writer_since))
        elif kind == ev.CONTENDED and arg == ev.EXCLUSIVE and writer_since is None:
            writer_since = step
        elif kind == ev.ACQUIRED and arg == ev.EXCLUSIVE:
            writer_since = None
    return worst


def latency_finding(scenario: str, params: dict, trace: list[tuple] | None) -> int | None:
    """The stall in steps when it exceeds what the correct model allows, else None.

    Only ``max_guest_memory`` defines a bound (its ``stall_bound``); the
    run must have been traced.
    """
    if scenario != "max_guest_memory" or trace is None:
        return None
    stall = max_read_hold_while_writer_waits(trace)
    return stall if stall > stall_bound(params["gib"], params["pages_per_gib"]) else None
