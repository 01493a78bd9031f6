"""The runtime: managed threads, time, scheduling points and the event spine.

Two execution modes share every line of primitive code:

* **free** — threads run concurrently; a primitive that must wait parks its
  thread on a ``threading.Condition`` until a waker hands it on.  Optional
  seeded noise sleeps briefly at scheduling points to shake interleavings.
* **controlled** — still one OS thread per managed thread, but exactly one
  runs between two scheduling points: the running thread asks the strategy
  who goes next and hands over a per-thread ``go`` lock.  Waiting is modelled,
  time is virtual, and the decisions form the replayable schedule string.

All primitive state (lock owners, waiter lists, counters) is guarded by one
runtime-wide ``big`` lock.  It plays the role of the futex hash-bucket lock:
held only for a few bytecodes, never while a thread waits, and it makes the
"every live thread is waiting" test exact, so a deadlock is found in either
mode without timeouts.

Context rules: ``wait``/``wake_*`` are called with ``big`` held; ``point`` and
``emit`` without.
"""

from __future__ import annotations

import bisect
import random
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from sortedcontainers import SortedList

from . import events as ev
from .deadlock import describe_deadlock
from .errors import (
    DeadlockUnwind,
    KsyncError,
    ReplayDivergence,
    ReportError,
    RunAborted,
    ThreadFailed,
)
from .report import Report, call_site
from .strategy import Strategy, encode_schedule, make_strategy
from .thread import BLOCKED, DONE, IDLE, RUNNING, SLEEPING, KThread, current_thread, set_current

ALL_CHECKS = ("lockdep", "races", "uaf", "refcount", "atomic_sleep", "hung")
MODES = ("free", "controlled")

_runtime_registry: dict[str, Callable[[], ev.Checker]] = {}


def register_checker(name: str, factory: Callable[[], ev.Checker]) -> None:
    """Make ``name`` usable in ``Runtime(checks=...)`` (called by checker modules)."""
    _runtime_registry[name] = factory


class Runtime:
    """Owns the managed threads, the clock, the scheduler and the listeners.

    ``with Runtime(mode="controlled", seed=3) as rt:`` makes the entering
    thread managed (thread 0, named ``main``); ``rt.spawn`` starts others.
    On exit the runtime joins every thread, stops its kthreads and finishes
    the checkers; ``rt.reports`` then lists the findings and ``rt.schedule``
    the replay string.
    """

    def __init__(self, mode: str = "free", seed: int = 0,
                 strategy: Strategy | str | None = None,
                 checks: Iterable[str] | None = None, noise: float = 0.0,
                 strict: bool = False, trace: bool = False,
                 schedule: str | None = None, max_steps: int | None = 200_000,
                 tick_ns: int = 1000, resched_steps: int = 50,
                 listeners: Iterable[ev.Checker] = ()) -> None:
        if mode not in MODES:
            raise KsyncError(f"Runtime(mode={mode!r}): mode must be one of {MODES}")
        if not 0.0 <= noise <= 1.0:
            raise KsyncError(f"Runtime(noise={noise!r}): noise is a probability in [0, 1]")
        self.mode = mode
        self.controlled = mode == "controlled"
        self.seed = seed
        self.noise = noise
        self.strict = strict
        self.max_steps = max_steps
        self.tick_ns = tick_ns
        self.resched_steps = resched_steps
        self.checks = frozenset(ALL_CHECKS if checks is None else checks)
        unknown = self.checks - set(ALL_CHECKS)
        if unknown:
            raise KsyncError(f"Runtime(checks=...): unknown checker(s) {sorted(unknown)}; "
                             f"known: {', '.join(ALL_CHECKS)}")
        self.strategy = make_strategy(strategy, seed, schedule) if self.controlled else None
        self.big = threading.Lock()
        self.reports: list[Report] = []
        self.threads: list[KThread] = []
        self.step = 0                 # scheduling points passed (controlled)
        self.decisions: list[int] = []
        self.clock_ns = 0             # virtual time (controlled)
        self._t0 = time.monotonic_ns()
        self._timers: SortedList = SortedList()
        self._timer_seq = 0
        self._runnable: list[KThread] = []
        self._current: KThread | None = None
        self._nlive = 0
        self._count = {BLOCKED: 0, IDLE: 0, SLEEPING: 0}
        self.aborting: str | None = None
        self.abort_report: Report | None = None   # the deadlock/hung report an abort filed
        self.stopping = False
        self._kill_points = False
        self._sleepq = _SleepQueue()
        self.divergence: ReplayDivergence | None = None
        self._exit_hooks: list[Callable[[], None]] = []
        self._services: dict[str, Any] = {}
        self._entered = False
        self.main: KThread | None = None
        self.checkers: list[ev.Checker] = []
        self.tracer = ev.TraceRecorder() if trace else None
        self._extra = list(listeners)
        self.listeners: tuple[Callable[..., None], ...] = ()
        # kind -> the listeners that want it (a checker's ``kinds``; None: all).
        self._dispatch: dict[str, tuple[Callable[..., None], ...]] = {}
        self._catchall: tuple[Callable[..., None], ...] = ()

    # ------------------------------------------------------------------ entry/exit
    def __enter__(self) -> Runtime:
        if self._entered:
            raise KsyncError("a ksync.Runtime can be entered only once")
        try:
            current_thread()
        except KsyncError:
            pass
        else:
            raise KsyncError("this thread already runs under a ksync.Runtime; runtimes do not nest")
        self._entered = True
        for name in sorted(self.checks):
            factory = _runtime_registry.get(name)
            if factory is not None:
                self.checkers.append(factory())
        listeners = [*self.checkers, *self._extra]
        if self.tracer is not None:
            listeners.append(self.tracer)
        for c in listeners:
            c.attach(self)
        self.listeners = tuple(c.on_event for c in listeners)
        self._build_dispatch(listeners)
        main = self._new_thread(None, (), "main", daemon=False)
        main.os_thread = threading.current_thread()
        self.main = main
        set_current(main)
        if self.controlled:
            self._current = main
            self._runnable.append(main)
        return self

    def __exit__(self, etype: Any, exc: BaseException | None, tb: Any) -> bool:
        main = self.main
        assert main is not None
        failure: BaseException | None = None
        try:
            self._join_all(daemons=False)
            for hook in reversed(self._exit_hooks):
                hook()
        except RunAborted:
            pass
        except BaseException as e:  # noqa: BLE001 - reported after cleanup
            failure = e
        self._stop_kthreads(main)
        self._check_held_at_exit(main)
        with self.big:
            main.state = DONE
            self._nlive -= 1
        for c in self.checkers:
            c.finish()
        set_current(None)
        for t in self.threads[1:]:
            if t.os_thread is not None:
                t.os_thread.join(timeout=5.0)
        if self.divergence is None and self.strategy is not None and not failure:
            try:
                self.strategy.finish(len(self.decisions))
            except ReplayDivergence as e:
                self.divergence = e
        if self.divergence is not None:
            raise self.divergence
        if failure is not None:
            raise failure
        if exc is None:
            for t in self.threads:
                if t.exc is not None and not t.joined and not isinstance(t.exc, RunAborted):
                    raise ThreadFailed(t.name, t.exc) from t.exc
        ar = self.abort_report
        if (self.strict and ar is not None and self.reports[0] is ar
                and (exc is None or isinstance(exc, RunAborted))):
            # No thread can raise a deadlock at its call site (all were
            # unwound), so strict mode raises it here, once the run is down.
            raise ReportError(ar)
        return isinstance(exc, RunAborted)

    def _join_all(self, daemons: bool) -> None:
        while True:
            pending = [t for t in self.threads[1:] if t.daemon == daemons and t.state is not DONE]
            if not pending:
                return
            for t in pending:
                self.join(t, _quiet=True)

    def _stop_kthreads(self, main: KThread) -> None:
        """Tell idle kthreads to exit, then wait for every thread, even mid-abort."""
        with self.big:
            self.stopping = True
            for w in list(self.threads):
                if w.state is IDLE:
                    self._ready(w)
            for t in self.threads[1:]:
                while t.state is not DONE:
                    self.wait(main, t, f"exit of {t.name}", force=True)

    def at_exit(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` on the main thread at exit, after user threads ended (LIFO)."""
        self._exit_hooks.append(hook)

    def service(self, key: str, factory: Callable[[], Any]) -> Any:
        """A per-runtime singleton (the RCU state, the timer wheel, system_wq)."""
        s = self._services.get(key)
        if s is None:
            s = self._services[key] = factory()
        return s

    # ------------------------------------------------------------------ threads
    def _new_thread(self, fn: Any, args: tuple, name: str, daemon: bool) -> KThread:
        with self.big:
            t = KThread(self, len(self.threads), name, fn, args, daemon)
            t.rng = random.Random(self.seed * 1_000_003 + t.tid)
            t.last_resched = time.monotonic()
            self.threads.append(t)
            self._nlive += 1
        return t

    def spawn(self, fn: Callable[..., Any], *args: Any, name: str | None = None,
              daemon: bool = False) -> KThread:
        """Start ``fn(*args)`` on a new managed thread (kernel: kthread_run)."""
        if not callable(fn):
            raise KsyncError(f"spawn({fn!r}): not callable")
        parent = current_thread()
        if parent.rt is not self:
            raise KsyncError("spawn() called from a thread of another runtime")
        if self.aborting:
            raise DeadlockUnwind(f"run aborted ({self.aborting}); no new threads")
        t = self._new_thread(fn, args, name or f"kthread-{len(self.threads)}", daemon)
        if self.listeners:
            self.emit(parent, ev.SPAWN, t, None)
        os_t = threading.Thread(target=self._bootstrap, args=(t,), name=t.name, daemon=True)
        t.os_thread = os_t
        if self.controlled:
            with self.big:
                bisect.insort(self._runnable, t, key=_tid)
        os_t.start()
        self.point(parent)
        return t

    def _bootstrap(self, t: KThread) -> None:
        set_current(t)
        if self.controlled:
            t.go.acquire()
        try:
            if self.aborting:
                raise DeadlockUnwind(self.aborting)
            if self.listeners:
                self.emit(t, ev.START, t, None)
            t.result = t.fn(*t.args)
        except BaseException as e:  # noqa: BLE001 - kept for join()
            t.exc = e
        self._check_held_at_exit(t)
        if self.listeners:
            self.emit(t, ev.EXIT, t, None)
        with self.big:
            t.state = DONE
            self._nlive -= 1
            self.wake_all(t)
            if self.controlled:
                self._runnable.remove(t)
                self._switch(t, exiting=True)
            else:
                self._check_free_deadlock()
        set_current(None)

    def join(self, t: KThread, _quiet: bool = False) -> Any:
        """Wait for ``t`` to end; return its result or raise ThreadFailed."""
        me = current_thread()
        if t is me:
            raise KsyncError(f"thread {t.name!r} cannot join itself")
        self.point(me)
        with self.big:
            while t.state is not DONE:
                self.wait(me, t, f"join {t.name}")
        if self.listeners:
            self.emit(me, ev.JOIN, t, None)
        if _quiet:
            return t.result
        t.joined = True
        if t.exc is not None:
            if isinstance(t.exc, RunAborted):
                raise DeadlockUnwind(f"{t.name} was unwound: {t.exc}")
            raise ThreadFailed(t.name, t.exc) from t.exc
        return t.result

    def _check_held_at_exit(self, t: KThread) -> None:
        if t.held and "lockdep" in self.checks and not self.aborting:
            names = ", ".join(f"{getattr(lk, 'name', lk)} ({mode})" for lk, mode in t.held)
            try:
                self.report("lock-held-at-exit", f"lock held when thread {t.name} exited",
                            f"WARNING: lock held when returning to user space!\n"
                            f"{t.name}/{t.tid} is leaving the kernel with locks still held!\n"
                            f"held: {names}", thread=t)
            except ReportError as e:
                # Strict mode: the exit must still complete (or joiners hang),
                # so the report becomes the thread's failure instead.
                if t.exc is None:
                    t.exc = e

    # ------------------------------------------------------------------ events
    def emit(self, t: KThread, kind: str, obj: Any, arg: Any = None) -> None:
        """Hand one event to every listener that wants its kind.

        Cheap callers test ``listeners`` first.
        """
        for fn in self._dispatch.get(kind, self._catchall):
            fn(t, kind, obj, arg)

    def _build_dispatch(self, listeners: list[Any]) -> None:
        """Per event kind, the listeners to call, in attach order.

        A listener with a ``kinds`` attribute (a set of event kinds) is told
        only those; one without is told everything, including kinds no table
        entry names.  A checker that ignores most events then costs nothing
        on them: the spine carries ~500 events per reference run.
        """
        wanted = [(c.on_event, getattr(c, "kinds", None)) for c in listeners]
        self._catchall = tuple(fn for fn, ks in wanted if ks is None)
        known = {k for _fn, ks in wanted if ks is not None for k in ks}
        self._dispatch = {kind: tuple(fn for fn, ks in wanted if ks is None or kind in ks)
                          for kind in known}

    def report(self, kind: str, title: str, text: str, thread: KThread | None = None,
               **data: Any) -> Report:
        """File a finding; in strict mode raise it at the call site."""
        t = thread
        if t is None:
            try:
                t = current_thread()
            except KsyncError:
                t = None
        r = Report(kind, title, text, thread=t.name if t else "", data=data)
        self.reports.append(r)
        if self.strict and not self.aborting:
            raise ReportError(r)
        return r

    # ------------------------------------------------------------------ time
    def now_ns(self) -> int:
        """Virtual nanoseconds in controlled mode, wall nanoseconds since entry in free."""
        if self.controlled:
            return self.clock_ns
        return time.monotonic_ns() - self._t0

    @property
    def schedule(self) -> str:
        """The replay string of this run's decisions (controlled mode)."""
        return encode_schedule(self.decisions)

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
        if self._timers and self._timers[0][0] <= self.clock_ns:
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
        nxt.go.release()
        if not exiting:
            t.go.acquire()
        self.big.acquire()

    def _fire_timers(self) -> None:
        while self._timers and self._timers[0][0] <= self.clock_ns:
            _, _, w = self._timers.pop(0)
            w.timer_key = None
            w.timed_out = True
            self._ready(w)

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
    def _abort_run(self, why: str, describe: Callable[[Runtime], tuple[str, str]] | None) -> None:
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

    def _livelock_report(self, rt: Runtime) -> tuple[str, str]:
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


def site() -> str:
    """Call site of the public API function that called us (for error messages)."""
    return call_site()


__all__ = ["Runtime", "register_checker", "ALL_CHECKS", "MODES", "site"]
