"""Managed threads: the kthreads and vCPUs of a run.

Kernel counterpart: ``struct task_struct`` — here a real OS thread plus the
state the runtime and the checkers keep about it (locks held, atomic depth,
RCU nesting, what it is blocked on).

Each field's rule is noted beside its slot: "B" only under ``rt.big``,
"T" only by the thread itself, "I" set at creation.
"""

from __future__ import annotations

import threading
from typing import Any

from .baton import Baton
from .errors import NoRuntimeError

# Wait states (B).
RUNNING, BLOCKED, IDLE, SLEEPING, DONE = "running", "blocked", "idle", "sleeping", "done"

_tls = threading.local()


class KThread:
    """One managed thread.  ``join()`` returns its result or raises ``ThreadFailed``."""

    __slots__ = (
        "rt", "tid", "name", "fn", "args", "daemon", "os_thread",   # I
        "result", "exc", "state",                                   # B
        "held", "atomic", "rcu_depth", "rcu_gen",                   # T
        "blocked_on", "wait_desc", "timed_out", "timer_key",        # B
        "go", "cond", "rng", "run_steps", "last_resched",           # T / scheduler
        "joined", "wake_ns", "_waiters", "wait_since",
    )

    def __init__(self, rt: Any, tid: int, name: str, fn: Any, args: tuple, daemon: bool) -> None:
        self.rt = rt
        self.tid = tid
        self.name = name
        self.fn = fn
        self.args = args
        self.daemon = daemon
        # The OS thread: threading.Thread for main, a ksync.carriers.Carried handle otherwise.
        self.os_thread: Any = None
        self.result: Any = None
        self.exc: BaseException | None = None
        self.state = RUNNING
        # Locks held, innermost last, as (lock, mode): lockdep's held_locks.
        self.held: list[tuple[Any, str]] = []
        # Spinning locks held (preempt_count's role) and RCU read nesting.
        self.atomic = 0
        self.rcu_depth = 0
        self.rcu_gen = 0
        self.blocked_on: Any = None
        self.wait_desc = ""
        self.timed_out = False
        self.timer_key: Any = None
        self.wake_ns = 0
        self.wait_since = 0.0        # time.monotonic() when the current wait began
        # Controlled mode: given by whoever schedules this thread in.
        self.go = Baton() if rt.controlled else None
        # Free mode parks on a condition; controlled mode only on ``go``.
        self.cond = None if rt.controlled else threading.Condition(rt.big)
        self.rng: Any = None
        self.run_steps = 0
        self.last_resched = 0.0
        self.joined = False
        # Threads joining this one park here.
        self._waiters: list[KThread] = []

    def join(self) -> Any:
        """Wait for the thread to end (a blocking wait the runtime sees)."""
        return self.rt.join(self)

    @property
    def done(self) -> bool:
        return self.state is DONE

    def __repr__(self) -> str:
        return f"<KThread {self.tid}:{self.name} {self.state}>"


def current_thread() -> KThread:
    """The managed thread running this code; NoRuntimeError if unmanaged."""
    try:
        return _tls.t
    except AttributeError:
        raise NoRuntimeError(
            f"thread {threading.current_thread().name!r} is not managed by a ksync.Runtime: "
            "enter one with `with ksync.Runtime(): ...` or start the thread with rt.spawn()"
        ) from None


def set_current(t: KThread | None) -> None:
    """Make ``t`` the calling OS thread's managed thread; ``None`` ends it.

    Ending clears every per-thread cache kept on ``thread_locals()`` too (an
    OS thread carries other managed threads later, see ksync.carriers).
    """
    if t is None:
        _tls.__dict__.clear()
    else:
        _tls.t = t


def thread_locals() -> threading.local:
    """Per-managed-thread storage, emptied when the managed thread ends."""
    return _tls


def current_runtime() -> Any:
    """The ``Runtime`` the calling thread runs under."""
    return current_thread().rt
