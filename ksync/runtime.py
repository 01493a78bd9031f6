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
``emit`` without.  This file holds entry, exit, threads, events and time;
the scheduling points, parking, waking and aborts are ``Scheduling`` in
``sched.py``, which ``Runtime`` inherits.
"""

from __future__ import annotations

import bisect
import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from sortedcontainers import SortedList

from . import affinity, carriers
from . import events as ev
from .errors import (
    DeadlockUnwind,
    KsyncError,
    ReplayDivergence,
    ReportError,
    RunAborted,
    ThreadFailed,
)
from .report import Report, call_site
from .sched import NEVER, Scheduling, _SleepQueue, _tid
from .strategy import Strategy, encode_schedule, make_strategy
from .thread import BLOCKED, DONE, IDLE, SLEEPING, KThread, current_thread, set_current

ALL_CHECKS = ("lockdep", "races", "uaf", "refcount", "atomic_sleep", "hung")
MODES = ("free", "controlled")

_runtime_registry: dict[str, Callable[[], ev.Checker]] = {}


def register_checker(name: str, factory: Callable[[], ev.Checker]) -> None:
    """Make ``name`` usable in ``Runtime(checks=...)`` (called by checker modules)."""
    _runtime_registry[name] = factory


class Runtime(Scheduling):
    """Owns the managed threads, the clock, the scheduler and the listeners.

    ``with Runtime(mode="controlled", seed=3) as rt:`` makes the entering
    thread managed (thread 0, named ``main``); ``rt.spawn`` starts others.
    On exit the runtime joins every thread, stops its kthreads and finishes
    the checkers; ``rt.reports`` then lists the findings and ``rt.schedule``
    the replay string.  A controlled runtime pins its threads to one CPU
    while it runs (``pin``; see ``ksync.affinity``).  ``stacks=False``
    makes the checkers keep no stack per event: the same findings, reports
    whose stacks say "not recorded", and runs about 15% faster — what a
    campaign does before it replays a finding with stacks on.
    """

    def __init__(self, mode: str = "free", seed: int = 0,
                 strategy: Strategy | str | None = None,
                 checks: Iterable[str] | None = None, noise: float = 0.0,
                 strict: bool = False, trace: bool = False,
                 schedule: str | None = None, max_steps: int | None = 200_000,
                 tick_ns: int = 1000, resched_steps: int = 50,
                 listeners: Iterable[ev.Checker] = (),
                 pin: bool | int | None = None, stacks: bool = True) -> None:
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
        # False: checkers save no stack per event (a campaign's first pass;
        # the replay of a finding saves them).  Detection is the same.
        self.stacks = bool(stacks)
        unknown = self.checks - set(ALL_CHECKS)
        if unknown:
            raise KsyncError(f"Runtime(checks=...): unknown checker(s) {sorted(unknown)}; "
                             f"known: {', '.join(ALL_CHECKS)}")
        self.strategy = make_strategy(strategy, seed, schedule) if self.controlled else None
        # Controlled runs hand one CPU from thread to thread: keep them on one core.
        self.cpu = affinity.choose_cpu(pin) if self.controlled else None
        self._old_mask: set[int] | None = None
        self.big = threading.Lock()
        self.reports: list[Report] = []
        self.threads: list[KThread] = []
        self.step = 0                 # scheduling points passed (controlled)
        self.decisions: list[int] = []
        self.clock_ns = 0             # virtual time (controlled)
        self._t0 = time.monotonic_ns()
        self._timers: SortedList = SortedList()
        self._timer_due = NEVER      # the first timer's deadline (sched.py)
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
        if self.cpu is not None:
            self._old_mask = affinity.pin_calling_thread(self.cpu)
        try:
            self._enter_rest()
        except BaseException:
            # __exit__ will not run: take the checkers off khungtaskd's list
            # and give the thread its CPU mask back here.
            for c in self.checkers:
                c.finish()
            if self._old_mask is not None:
                affinity.restore(self._old_mask)
                self._old_mask = None
            raise
        return self

    def _enter_rest(self) -> None:
        for name in sorted(self.checks):
            factory = _runtime_registry.get(name)
            if factory is not None:
                self.checkers.append(factory())
        listeners = [*self.checkers, *self._extra]
        if self.tracer is not None:
            listeners.append(self.tracer)
        for c in listeners:
            c.attach(self)
        # Only listeners that want some event make the primitives emit at all:
        # a checker with no kinds (the hung-task watchdog) costs no event.
        self.listeners = tuple(c.on_event for c in listeners
                               if getattr(c, "kinds", None) is None or c.kinds)
        self._build_dispatch(listeners)
        main = self._new_thread(None, (), "main", daemon=False)
        main.os_thread = threading.current_thread()
        self.main = main
        set_current(main)
        if self.controlled:
            self._current = main
            self._runnable.append(main)

    def __exit__(self, etype: Any, exc: BaseException | None, tb: Any) -> bool:
        try:
            return self._exit(exc)
        finally:
            if self._old_mask is not None:
                affinity.restore(self._old_mask)
                self._old_mask = None

    def _exit(self, exc: BaseException | None) -> bool:
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
        if main.go is not None:
            main.go.close()
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
            if self.noise:      # only free-mode noise draws from it
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
        if self.controlled:
            with self.big:
                bisect.insort(self._runnable, t, key=_tid)
        t.os_thread = carriers.start(lambda: self._bootstrap(t), t.name)
        self.point(parent)
        return t

    def _bootstrap(self, t: KThread) -> None:
        set_current(t)
        if self.controlled:
            t.go.take()
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
        if t.go is not None:
            t.go.close()        # done: nobody schedules this thread again
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
        wanted = [(c, getattr(c, "kinds", None)) for c in listeners]
        self._catchall = tuple(c.on_event for c, ks in wanted if ks is None)
        known = {k for _c, ks in wanted if ks is not None for k in ks}
        # One pass per listener, appending in attach order (built every run).
        table: dict[str, list[Callable[..., None]]] = {k: [] for k in known}
        for c, ks in wanted:
            for k in (known if ks is None else ks):
                table[k].append(_handler(c, k))
        self._dispatch = {k: tuple(fns) for k, fns in table.items()}

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

def _handler(listener: Any, kind: str) -> Callable[..., None]:
    """The callable for ``kind`` events: a checker's own ``handler(kind)`` if it has one."""
    h = getattr(listener, "handler", None)
    return h(kind) if h is not None else listener.on_event


def site() -> str:
    """Call site of the public API function that called us (for error messages)."""
    return call_site()


__all__ = ["Runtime", "register_checker", "ALL_CHECKS", "MODES", "site"]
