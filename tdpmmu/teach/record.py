"""A recorded run, ready for reading: events with their times, and every report placed.

Kernel counterpart: what ``trace-cmd report`` reads back from a trace
buffer — here the ``ksync.TraceRecorder`` record of one run.  ``Trace`` is
the one input of the text trace (``tdpmmu.teach.trace``) and the timeline
(``tdpmmu.teach.timeline``); it gives each event a time and puts reports
filed after the last event (at exit, by a checker's final pass) at the end.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ksync import events as ev

#: Virtual nanoseconds per scheduling step when a record has no times (ksync's default tick).
DEFAULT_TICK_NS = 1000

Event = tuple[int, str, str, str, str]


class TraceUnavailable(ValueError):
    """A run was made without ``trace=True``: there is nothing to render."""


@dataclass
class Trace:
    """Events ``(step, thread, kind, object, arg)``, their times in ns, and the run's mode.

    ``events`` always ends with one REPORT entry per report of the run, in
    the order they were filed: those the recorder saw at their event, then
    the rest at the last step.
    """

    events: list[Event]
    times: list[int]
    mode: str = "controlled"
    seed: int | None = None
    title: str = ""
    threads: list[str] = field(default_factory=list)

    @classmethod
    def from_events(cls, events: Sequence[Event], times: Sequence[int] | None = None,
                    reports: Sequence[Any] = (), mode: str = "controlled",
                    seed: int | None = None, title: str = "") -> Trace:
        """Build from a recorder's lists; ``times`` default to step x the virtual tick."""
        evs = list(events)
        if times is None or len(times) != len(evs):
            tms = [s * DEFAULT_TICK_NS for s, *_ in evs]
        else:
            tms = list(times)
        seen = sum(1 for e in evs if e[2] == ev.REPORT)
        last_step = evs[-1][0] if evs else 0
        last_t = tms[-1] if tms else 0
        for r in list(reports)[seen:]:
            evs.append((last_step, r.thread, ev.REPORT, r.kind, r.title))
            tms.append(last_t)
        return cls(evs, tms, mode, seed, title, _thread_order(evs))

    @classmethod
    def from_runtime(cls, rt: Any, title: str = "") -> Trace:
        """Build from a ``ksync.Runtime`` entered with ``trace=True`` (after it exited)."""
        if rt.tracer is None:
            raise TraceUnavailable("this runtime was made without trace=True; "
                                   "Runtime(trace=True) records the events")
        return cls.from_events(rt.tracer.events, rt.tracer.times, rt.reports, rt.mode,
                               rt.seed, title)

    @classmethod
    def from_result(cls, result: Any, title: str = "") -> Trace:
        """Build from a ``tdpmmu.harness.RunResult`` of ``run_scenario(..., trace=True)``.

        Times come from the runtime when the run kept it (``keep_runtime=True``);
        otherwise each step counts one virtual tick.
        """
        if result.trace is None:
            raise TraceUnavailable(f"run of {result.scenario} (seed {result.seed}) has no "
                                   "trace; run it with trace=True")
        rt = getattr(result, "runtime", None)
        times = rt.tracer.times if rt is not None and rt.tracer is not None else None
        title = title or (f"{result.scenario} zap={result.zap} seed={result.seed}"
                          + (f" bugs={','.join(result.bugs)}" if result.bugs else ""))
        return cls.from_events(result.trace, times, result.reports, result.mode,
                               result.seed, title)

    def reports(self) -> list[tuple[int, int, str, str, str]]:
        """``(step, time_ns, thread, kind, title)`` of every report, in filing order."""
        return [(s, self.times[i], th, o, a)
                for i, (s, th, k, o, a) in enumerate(self.events) if k == ev.REPORT]

    @property
    def end_ns(self) -> int:
        return self.times[-1] if self.times else 0


def _thread_order(events: Sequence[Event]) -> list[str]:
    """Threads in the order they were spawned (``main`` first), then any others as they appear."""
    order: dict[str, None] = {"main": None} if any(e[1] == "main" for e in events) else {}
    for e in events:
        if e[2] == ev.SPAWN:
            order.setdefault(e[3], None)
    for e in events:
        if e[2] != ev.REPORT:
            order.setdefault(e[1], None)
    present = {e[1] for e in events}
    return [t for t in order if t in present]


_ROOT = re.compile(r"(root#\d+)\([^)]*\)")


def short_name(name: str) -> str:
    """A short, still unambiguous name for a lock, root or counter.

    ``kvm->mmu_lock`` -> ``mmu_lock``; ``kvm->arch.tdp_mmu_pages_lock`` ->
    ``pages_lock``; ``root#3(as0,L4)->tdp_mmu_root_count`` -> ``root#3 ref``.
    """
    name = _ROOT.sub(r"\1", name)
    name = name.replace("->tdp_mmu_root_count", " ref")
    name = name.replace("kvm->arch.", "").replace("kvm->", "")
    return name.replace("tdp_mmu_pages_lock", "pages_lock")


MODE_LETTER = {ev.EXCLUSIVE: "W", ev.READER: "R", ev.RECURSIVE_READER: "r"}


def lock_label(name: str, mode: str) -> str:
    """``mmu_lock(R)``: a lock's short name and the mode it is held in."""
    return f"{short_name(name)}({MODE_LETTER.get(mode, mode)})"


def is_pseudo_lock(name: str) -> bool:
    """Lockdep's work-queue maps, ``(wq_completion)kvm``: the trace shows flushes instead."""
    return name.startswith("(")
