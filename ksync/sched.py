"""Scheduling, waiting and aborts: the half of the runtime that decides who runs.

Kernel counterpart: the scheduler's ``schedule()``/``try_to_wake_up()`` pair,
with the hung-task and lockdep "no runnable task" reports.  ``Runtime``
inherits these methods; they are kept here so that ``runtime.py`` holds
entry, exit, threads and events, and this file the state machine of a
thread between RUNNING, BLOCKED, SLEEPING, IDLE and DONE.

Context rules (as in runtime.py): ``wait``/``wake_*``/``_ready``/``_switch``
are called with ``rt.big`` held; ``point`` without.
"""

from __future__ import annotations

import bisect
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from . import events as ev
from .deadlock import describe_deadlock
from .errors import DeadlockUnwind, KsyncError, ReplayDivergence, RunAborted
from .report import Report
from .thread import BLOCKED, DONE, IDLE, RUNNING, SLEEPING, KThread

#: ``_timer_due`` when no timer is armed.
NEVER = 1 << 62


class Scheduling:
    """Mixin of ``Runtime``: scheduling points, parking and waking, aborting a run.

    The fields it uses are declared below and set by ``Runtime.__init__``;
    declaring them here (annotations only, no values) keeps this file free
    of any import of ``runtime.py``, which sits above it.
    """

    big: threading.Lock                 # the runtime-wide lock (see runtime.py)
    controlled: bool
    noise: float
    strategy: Any                       # a ksync.strategy.Strategy in controlled mode
    max_steps: int | None
    tick_ns: int
    resched_steps: int
    step: int
    clock_ns: int
    decisions: list[int]
    threads: list[KThread]
    reports: list[Report]
    listeners: tuple[Callable[..., None], ...]
    aborting: str | None
    abort_report: Report | None
    stopping: bool
    divergence: ReplayDivergence | None
    _runnable: list[KThread]
    _current: KThread | None
    _timers: Any                        # SortedList of (deadline_ns, seq, KThread)
    _timer_due: int
    _timer_seq: int
    _count: dict[str, int]
    _nlive: int
    _kill_points: bool
    _sleepq: _SleepQueue
    emit: Callable[[KThread, str, Any, Any], None]

    # ------------------------------------------------------------------ scheduling
    def point(self, t: KThread) -> None:
        """A scheduling point: the strategy may switch threads here (no ``big`` held)."""
        if self.controlled:
            with self.big:
                self._switch(t)
            if self._kill_points:
                raise RunAborted(f"run aborted ({self.aborting})")
        elif self.noise and t.rng.random() < self.noise:
            time.sleep(0 if t.rng.random() < 0.5 else 20e-6)

    def need_resched(self, t: KThread) -> bool:
        """Kernel: need_resched() — another thread wants this CPU."""
        if self.controlled:
            return t.run_steps >= self.resched_steps and len(self._runnable) > 1
        return time.monotonic() - t.last_resched > 0.003

    def _switch(self, t: KThread, exiting: bool = False) -> None:
        """Controlled mode: choose who runs next and hand over.  ``big`` held."""
        self.step += 1
        self.clock_ns += self.tick_ns
        t.run_steps += 1
        if self.max_steps is not None and self.step > self.max_steps and not self.aborting:
            self._abort_run("livelock", self._livelock_report)
            self._kill_points = True
        if self._timer_due <= self.clock_ns:
            self._fire_timers()
        while not self._runnable:
            if self._timers:
                self.clock_ns = max(self.clock_ns, self._timers[0][0])
                self._fire_timers()
            elif not self.aborting:
                self._abort_run("deadlock", describe_deadlock)
            elif exiting:
                return  # the last thread left while main drains: nobody else to run
            else:
                raise KsyncError("internal: no runnable thread while the run unwinds:\n"
                                 + self.dump_stacks())
        runnable = self._runnable
        if len(runnable) == 1:
            nxt = runnable[0]
        elif self.divergence is not None:
            nxt = runnable[0]   # unwinding a diverged replay: any order will do
        else:
            try:
                nxt = self.strategy.choose(runnable, t, len(self.decisions))
                self.decisions.append(nxt.tid)
            except ReplayDivergence as e:
                self.divergence = e
                self._abort_run(str(e), None)
                nxt = runnable[0]
        if nxt is t:
            return
        nxt.run_steps = 0
        self._current = nxt
        self.big.release()
        nxt.go.give()
        if not exiting:
            t.go.take()
        self.big.acquire()

    def _fire_timers(self) -> None:
        while self._timers and self._timers[0][0] <= self.clock_ns:
            _, _, w = self._timers.pop(0)
            w.timer_key = None
            w.timed_out = True
            self._ready(w)
        self._note_timers()

    def _note_timers(self) -> None:
        # The earliest deadline, kept apart so the hot path tests one int.
        self._timer_due = self._timers[0][0] if self._timers else NEVER

    # ------------------------------------------------------------------ waiting
    def wait(self, t: KThread, obj: Any, desc: str, timeout_ns: int | None = None,
             idle: bool = False, force: bool = False) -> bool:
        """Park ``t`` on ``obj`` until ``wake_*(obj)``; ``big`` held, and re-held on return.

        Returns False if ``timeout_ns`` passed first.  Raises RunAborted when
        the run is aborted (deadlock, livelock, divergence) so that the thread
        unwinds from its wait point.  ``idle`` marks a kthread waiting for
        work (optionally with a timeout, to idle out): such waits alone are
        not a deadlock, and they return False at once when the runtime is
        stopping.  ``force`` waits even mid-abort
        (the exiting main thread draining the others).
        """
        if idle and self.stopping:
            return False
        if self.aborting and not force:
            raise DeadlockUnwind(f"run aborted ({self.aborting}) while {t.name} would wait on {desc}")
        state = IDLE if idle else SLEEPING if timeout_ns is not None else BLOCKED
        t.state = state
        t.blocked_on = obj
        t.wait_desc = desc
        t.wait_since = time.monotonic()
        t.timed_out = False
        obj._waiters.append(t)
        self._count[state] += 1
        if self.listeners and not idle:
            self.emit(t, ev.BLOCK, obj, desc)
        if self.controlled:
            self._runnable.remove(t)
            if timeout_ns is not None:
                self._timer_seq += 1
                t.timer_key = (self.clock_ns + max(0, timeout_ns), self._timer_seq, t)
                self._timers.add(t.timer_key)
                self._timer_due = min(self._timer_due, t.timer_key[0])
            self._switch(t)
        else:
            self._free_wait(t, state, timeout_ns, force)
        if t.blocked_on is not None:       # timed out (or aborted) while still queued
            self._unqueue(t)
        if self.aborting and not t.timed_out and not force:
            raise DeadlockUnwind(f"run aborted ({self.aborting}); {t.name} was waiting on {desc}")
        return not t.timed_out

    def _check_free_deadlock(self) -> bool:
        """Free mode, ``big`` held: every live thread waits and no timer can end it."""
        if (not self.aborting and self._count[SLEEPING] == 0 and self._count[BLOCKED] > 0
                and self._count[BLOCKED] + self._count[IDLE] >= self._nlive):
            self._abort_run("deadlock", describe_deadlock)
            return True
        return False

    def _free_wait(self, t: KThread, state: str, timeout_ns: int | None, force: bool) -> None:
        if state is not SLEEPING and self._check_free_deadlock() and not force:
            return
        deadline = None if timeout_ns is None else time.monotonic() + timeout_ns / 1e9
        while t.blocked_on is not None and (force or not self.aborting):
            if deadline is None:
                if not t.cond.wait(1.0):
                    self._check_free_deadlock()
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    t.timed_out = True
                    return
                t.cond.wait(left)

    def _unqueue(self, t: KThread) -> None:
        obj = t.blocked_on
        if obj is not None and t in obj._waiters:
            obj._waiters.remove(t)
        if t.state in self._count:
            self._count[t.state] -= 1
        t.state = RUNNING
        t.blocked_on = None
        if t.timer_key is not None:
            self._timers.discard(t.timer_key)
            self._note_timers()
            t.timer_key = None

    def _ready(self, w: KThread) -> None:
        """Make a parked thread run again (``big`` held)."""
        if w.blocked_on is not None:
            self._unqueue(w)
        if self.controlled:
            bisect.insort(self._runnable, w, key=_tid)
        else:
            w.cond.notify()

    def wake_all(self, obj: Any) -> None:
        """Wake every thread parked on ``obj``; they re-test their conditions."""
        ws = obj._waiters
        while ws:
            w = ws[0]
            w.timed_out = False
            self._ready(w)

    def wake_one(self, obj: Any) -> None:
        if obj._waiters:
            w = obj._waiters[0]
            w.timed_out = False
            self._ready(w)

    def sleep_ns(self, t: KThread, ns: int) -> None:
        """Sleep ``ns`` (virtual in controlled mode).  Kernel: schedule_timeout()."""
        with self.big:
            self.wait(t, self._sleepq, "sleep", timeout_ns=ns)
        t.last_resched = time.monotonic()

    # ------------------------------------------------------------------ aborts
    def _abort_run(self, why: str,
                   describe: Callable[[Scheduling], tuple[str, str]] | None) -> None:
        """Unwind every parked thread (``big`` held): a run never hangs."""
        if self.aborting:
            return
        if describe is not None:
            title, text = describe(self)
            kind = "deadlock" if why == "deadlock" else "hung-task"
            self.abort_report = Report(kind, title, text, thread="")
            self.reports.append(self.abort_report)
        self.aborting = why
        for w in list(self.threads):
            if w.blocked_on is not None:
                w.timed_out = False
                self._ready(w)

    def _livelock_report(self, rt: Scheduling) -> tuple[str, str]:
        lines = [f"  {t.name} ({t.state})" for t in self.threads if t.state is not DONE]
        return (f"run exceeded max_steps={self.max_steps} scheduling points",
                "INFO: task(s) made no forward progress within the step budget "
                f"(max_steps={self.max_steps}); threads still alive:\n" + "\n".join(lines))

    def dump_stacks(self) -> str:
        """Every managed thread's Python stack (the hung-task report's body)."""
        frames = sys._current_frames()
        out = []
        for t in self.threads:
            if t.os_thread is None or t.state is DONE:
                continue
            f = frames.get(t.os_thread.ident)
            out.append(f"task:{t.name} state:{t.state}"
                       + (f" waiting on {t.wait_desc}" if t.blocked_on is not None else ""))
            while f is not None:
                out.append(f"  {f.f_code.co_filename}:{f.f_lineno} {f.f_code.co_name}")
                f = f.f_back
        return "\n".join(out)


class _SleepQueue:
    """The object sleepers park on; nobody wakes it, their timer does."""

    name = "sleep"

    def __init__(self) -> None:
        self._waiters: list[KThread] = []


def _tid(t: KThread) -> int:
    return t.tid
