"""The event spine: what every visible operation reports, and who listens.

Every primitive turns each visible operation into one call
``rt.emit(thread, kind, obj, arg)`` which fans out to the enabled checkers and
the trace recorder. With nothing attached the primitives skip the call
entirely (they test ``rt.listeners`` first), so a checker that is off costs a
truth test.

Kinds are short interned strings so listeners can compare them with ``is``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

# Locks: ACQUIRE is emitted before waiting (as lockdep's lock_acquire() runs
# before the lock is taken, so an inversion is seen even when it does not
# deadlock); ACQUIRED once held; RELEASE when dropped.  arg = mode.
ACQUIRE = "acquire"
ACQUIRED = "acquired"
RELEASE = "release"
CONTENDED = "contended"
# Atomic read-modify-write or read on an Atomic/Refcount.  arg = (op, old, new).
ATOMIC = "atomic"
REFCOUNT = "refcount"
# Instrumented plain memory.  obj = the cell, arg = value.
READ = "read"
WRITE = "write"
# Threads.  obj = the KThread concerned.
SPAWN = "spawn"
START = "start"
EXIT = "exit"
JOIN = "join"
# Blocking and sleeping.  obj = what is waited for.
BLOCK = "block"
WAKE = "wake"
MIGHT_SLEEP = "might_sleep"
SLEEP = "sleep"
# Completions.
COMPLETE = "complete"
WAIT_DONE = "wait_done"
# RCU.  obj = the rcu state.
RCU_LOCK = "rcu_read_lock"
RCU_UNLOCK = "rcu_read_unlock"
RCU_GP = "rcu_gp"             # a grace period ended; arg = sequence number
RCU_CALLBACK = "rcu_callback"
# Objects.
ALLOC = "alloc"
FREE = "free"
ACCESS = "access"
# Happens-before edges a higher layer declares (work queues: queue_work
# releases to the work, the worker acquires it when the work starts; the end
# of a work releases to its flush, which acquires it on return).  obj = the
# synchronisation object both sides name.
HB_RELEASE = "hb_release"
HB_ACQUIRE = "hb_acquire"
# Anything a higher layer wants to put on the spine (work queue events, root
# state changes); arg carries its detail.
CUSTOM = "custom"
# Trace-only kinds: the TraceRecorder adds these to its own record; nothing
# emits them on the spine.  REPORT: a report was filed (obj = its kind,
# arg = its title).  STATE: a probed field of a watched object changed
# (obj = "name.field", arg = the new value); see register_state_probe.
REPORT = "report"
STATE = "state"

# Lock modes carried in ``arg`` of lock events; lockdep distinguishes the
# three acquisition kinds of today's lockdep.
EXCLUSIVE = "write"
READER = "read"                  # non-recursive reader (qrwlock read_lock in task context)
RECURSIVE_READER = "read-recursive"  # RCU read sections


class Checker:
    """A listener on the spine.

    Subclasses set ``name`` (the key used in ``Runtime(checks=...)``) and
    override ``on_event``; ``attach`` is called when the runtime is entered and
    ``finish`` when it exits (after every thread ended).  Reports are filed
    with ``self.rt.report(...)``.
    """

    name = ""

    def attach(self, rt: Any) -> None:
        self.rt = rt

    def on_event(self, t: Any, kind: str, obj: Any, arg: Any) -> None:
        raise NotImplementedError

    def handler(self, kind: str) -> Callable[[Any, str, Any, Any], None]:
        """What the runtime calls for events of ``kind``: ``on_event`` unless a
        checker has a method for that kind alone (one call less per event)."""
        return self.on_event

    def finish(self) -> None:
        pass


def obj_name(obj: Any) -> str:
    """A stable, human-readable name for an object on the spine."""
    name = getattr(obj, "name", None)
    if isinstance(name, str):
        return name
    return type(obj).__name__


StateProbe = Callable[[Any], dict[str, str]]

#: (class, probe) pairs: an allocated object of that class is watched by the
#: trace recorder, which calls the probe after every event and records each
#: field whose value changed.  Higher layers register their objects (the TDP
#: MMU's roots and VM) so a trace shows state that no primitive emits.
_STATE_PROBES: list[tuple[type, StateProbe]] = []


def register_state_probe(cls: type, probe: StateProbe) -> None:
    """Watch objects of ``cls`` in traces: ``probe(obj)`` returns ``{field: value}``.

    Kernel counterpart: none as such; it plays the part of the tracepoints
    (``trace_kvm_mmu_*``) that tell a reader what the MMU did between two
    lock operations.  Registering the same pair twice has no effect.
    """
    if not isinstance(cls, type) or not callable(probe):
        raise TypeError(f"register_state_probe({cls!r}, {probe!r}): a class and a callable")
    if (cls, probe) not in _STATE_PROBES:
        _STATE_PROBES.append((cls, probe))


class TraceRecorder(Checker):
    """Records every event as ``(step, thread, kind, object, arg)`` tuples.

    Names rather than ids are stored so that two runs of the same program
    under the same seed give equal traces.  ``times`` runs beside ``events``:
    ``rt.now_ns()`` at each event (virtual time in controlled mode, wall time
    since the runtime was entered in free mode).  Besides the spine's events
    the record holds REPORT entries (a report filed while handling an event)
    and STATE entries (a change seen by a registered state probe).

    Thread safety: in free mode several threads emit at once, so one lock
    orders the appends; its cost is paid only when tracing is on.  Cost per
    event: one append plus one probe call per watched live object.
    """

    name = "trace"

    def __init__(self) -> None:
        self.events: list[tuple[int, str, str, str, str]] = []
        self.times: list[int] = []
        self._lock = threading.Lock()
        self._watched: list[tuple[Any, str, StateProbe, dict[str, str]]] = []
        self._nreports = 0
        self._last = ""

    def on_event(self, t: Any, kind: str, obj: Any, arg: Any) -> None:
        rt = self.rt
        with self._lock:
            now = rt.now_ns()
            if self._watched and t.name != self._last:
                # A thread switched in resumes at a scheduling point and emits
                # at once, so a change seen now was made by the one that ran
                # before it, after that thread's last event.
                self._probe(self._last, now, freed=None)
            self._last = t.name
            self._add(rt.step, now, t.name, kind, obj_name(obj), _short(arg))
            if kind == ALLOC and _STATE_PROBES:
                self._watch(obj)
            if self._watched:
                self._probe(t.name, now, freed=obj if kind == FREE else None)
            if len(rt.reports) > self._nreports:
                self._note_reports(now)

    def _add(self, step: int, now: int, thread: str, kind: str, obj: str, arg: str) -> None:
        self.events.append((step, thread, kind, obj, arg))
        self.times.append(now)

    def _watch(self, obj: Any) -> None:
        for cls, probe in _STATE_PROBES:
            if isinstance(obj, cls):
                self._watched.append((obj, obj_name(obj), probe, dict(probe(obj))))

    def _probe(self, thread: str, now: int, freed: Any) -> None:
        step = self.rt.step
        keep = []
        for entry in self._watched:
            obj, name, probe, last = entry
            state = probe(obj)
            for field, value in state.items():
                if last.get(field) != value:
                    last[field] = value
                    self._add(step, now, thread, STATE, f"{name}.{field}", str(value))
            if obj is not freed:
                keep.append(entry)
        self._watched = keep

    def _note_reports(self, now: int) -> None:
        reports = self.rt.reports
        for r in reports[self._nreports:]:
            # A report with no thread (a deadlock found by the scheduler) stays so.
            self._add(self.rt.step, now, r.thread, REPORT, r.kind, r.title)
        self._nreports = len(reports)

    def lines(self) -> list[str]:
        return [f"{s:6d} {th:<14} {k:<16} {o} {a}".rstrip() for s, th, k, o, a in self.events]


def _short(arg: Any) -> str:
    if arg is None:
        return ""
    if isinstance(arg, str | int | float | bool):
        return str(arg)
    if isinstance(arg, tuple):
        return ",".join(_short(a) for a in arg)
    return obj_name(arg)
