"""The event spine: what every visible operation reports, and who listens.

Every primitive turns each visible operation into one call
``rt.emit(thread, kind, obj, arg)`` which fans out to the enabled checkers and
the trace recorder. With nothing attached the primitives skip the call
entirely (they test ``rt.listeners`` first), so a checker that is off costs a
truth test.

Kinds are short interned strings so listeners can compare them with ``is``.
"""

from __future__ import annotations

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

    def finish(self) -> None:
        pass


def obj_name(obj: Any) -> str:
    """A stable, human-readable name for an object on the spine."""
    name = getattr(obj, "name", None)
    if isinstance(name, str):
        return name
    return type(obj).__name__


class TraceRecorder(Checker):
    """Records every event as ``(step, thread, kind, object, arg)`` tuples.

    Names rather than ids are stored so that two runs of the same program
    under the same seed give equal traces.
    """

    name = "trace"

    def __init__(self) -> None:
        self.events: list[tuple[int, str, str, str, str]] = []

    def on_event(self, t: Any, kind: str, obj: Any, arg: Any) -> None:
        self.events.append((self.rt.step, t.name, kind, obj_name(obj), _short(arg)))

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
