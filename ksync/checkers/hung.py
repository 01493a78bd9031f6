"""The hung-task watchdog.

Kernel counterpart: kernel/hung_task.c (``khungtaskd``): a kthread wakes up
periodically and reports every task that has stayed in uninterruptible sleep
longer than ``hung_task_timeout_secs``, with its stack, then the locks held
in the system and every task's stack.

Here, as there, one watchdog thread serves the whole process: a plain
daemon OS thread named ``khungtaskd`` (not a managed thread, so it never
takes part in scheduling), started on first use.  ``attach`` puts a
runtime's checker on its list and ``finish`` takes it off; once ``finish``
returned, the checker is never looked at again.  Every ``poll_s`` (the
smallest of the listed checkers') it looks at each runtime:

* in free mode, snapshots the managed threads under ``rt.big`` and reports
  each one blocked (a lock, a completion, a flush, a join...) for longer than
  ``timeout_s`` — once per wait.  Waiting to join a thread that is itself
  running or sleeping is progress, not a hang, and is not reported;
* in controlled mode (where the runtime already turns "nobody can run" into
  a deadlock report), watches the scheduler: if no scheduling point passes
  for ``timeout_s`` of wall-clock time, the running thread is stuck in code
  that never reaches one (a pure-Python spin loop, a foreign lock) and is
  reported once per stall.  Time the running thread spent waiting for a CPU
  (its run-queue delay, from Linux schedstat) does not count: a machine
  loaded past its cores delays a run without the run being stuck.

Configuration: ``timeout_s`` defaults to the environment variable
``KSYNC_HUNG_TIMEOUT`` (seconds; ``0`` disables the watchdog) or else
``DEFAULT_TIMEOUT_S``; both it and ``poll_s`` may be changed on the instance
during a run (``get_checker(rt, "hung").timeout_s = 0.5``).  Reports come
from the watchdog thread, so strict mode records them but cannot raise them
into the hung thread.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

from .. import affinity
from .. import events as ev
from ..deadlock import holders_of
from ..errors import ReportError
from . import _stacks

#: Seconds a thread may stay blocked before it is reported (kernel: 120).
DEFAULT_TIMEOUT_S = 5.0
#: Seconds between two looks (kernel: the timeout itself; finer is cheap here).
POLL_S = 0.05
#: Seconds with no runtime to watch before khungtaskd stops polling.
PARK_AFTER_S = 2.0


def _timeout_from_env() -> float:
    raw = os.environ.get("KSYNC_HUNG_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        return float(raw)
    except ValueError:
        return DEFAULT_TIMEOUT_S


class HungTask(ev.Checker):
    """The ``hung`` checker: a watchdog thread, no per-event work."""

    name = "hung"
    #: No per-event work: the runtime tells it nothing.
    kinds: frozenset[str] = frozenset()

    def __init__(self) -> None:
        self.timeout_s = DEFAULT_TIMEOUT_S
        self.poll_s = POLL_S
        self.watched = False
        self._reported: set[Any] = set()
        self._last_step = 0
        self._since = 0.0
        self._delay: float | None = None   # run_delay_s of the running thread at the last look
        self.rt: Any = None

    def attach(self, rt: Any) -> None:
        self.rt = rt
        self.timeout_s = _timeout_from_env()
        if self.timeout_s > 0:
            self._last_step, self._since = rt.step, time.monotonic()
            _KHUNGTASKD.watch(self)
            self.watched = True

    def on_event(self, t: Any, kind: str, obj: Any, arg: Any) -> None:
        return None

    def finish(self) -> None:
        if self.watched:
            _KHUNGTASKD.unwatch(self)
            self.watched = False

    # ------------------------------------------------------------------ watchdog
    def look(self, now: float) -> None:
        """One look at this runtime (called by khungtaskd)."""
        timeout = self.timeout_s
        if timeout <= 0:
            return
        rt = self.rt
        try:
            if rt.controlled:
                self._look_controlled(rt, now, timeout)
            else:
                self._check_blocked(now, timeout)
        except ReportError:
            pass        # strict mode: the report is filed; nobody to raise it to

    def _look_controlled(self, rt: Any, now: float, timeout: float) -> None:
        """A stall is wall time with no scheduling point, minus the running
        thread's wait for a CPU (an overloaded machine is not a stuck thread;
        the kernel's watchdogs discount a paused guest's steal time alike)."""
        if rt.step != self._last_step:
            self._last_step, self._since = rt.step, now
            self._delay = None
            return
        cur = getattr(rt, "_current", None)
        delay = run_delay_s(getattr(getattr(cur, "os_thread", None), "ident", None))
        if self._delay is None:
            self._delay = delay
        # Time the thread spent runnable but not running moves the start on.
        self._since += max(0.0, delay - self._delay)
        self._delay = delay
        if now - self._since >= timeout and ("stall", self._last_step) not in self._reported:
            self._reported.add(("stall", self._last_step))
            self._report_stall(now - self._since)

    def _check_blocked(self, now: float, timeout: float) -> None:
        rt = self.rt
        with rt.big:
            snap = [(t, t.blocked_on, t.wait_desc, t.wait_since) for t in rt.threads
                    if t.state == "blocked" and t.blocked_on is not None]
        for t, obj, desc, since in snap:
            if now - since < timeout or (t.tid, since) in self._reported:
                continue
            if getattr(obj, "tid", None) is not None and obj.state in ("running", "sleeping"):
                continue        # joining a thread that makes progress
            self._reported.add((t.tid, since))
            self._report_blocked(t, obj, desc, now - since, timeout)

    def _report_blocked(self, t: Any, obj: Any, desc: str, waited: float,
                        timeout: float) -> None:
        holders = ", ".join(f"{h.name}/{h.tid}" for h in holders_of(obj)) or "nobody"
        stack = _os_stack(t)
        lines = [f"INFO: task {t.name}:{t.tid} blocked for more than {timeout:g} seconds.",
                 f"      waiting {waited:.2f} s on {desc}, held by {holders}",
                 '"KSYNC_HUNG_TIMEOUT=0" disables this message.',
                 f"task:{t.name:<15} state:D pid:{t.tid}",
                 "Call Trace:", stack, ""]
        lines += self._all_locks() + ["", "Showing all tasks:", self.rt.dump_stacks()]
        self.rt.report("hung-task",
                       f"task {t.name} blocked for more than {timeout:g} seconds on {desc}",
                       "\n".join(lines), thread=t, waiting_on=desc, waited_s=round(waited, 3),
                       holders=[h.name for h in holders_of(obj)],
                       stack=[ln.strip() for ln in stack.splitlines()])

    def _report_stall(self, stalled: float) -> None:
        rt = self.rt
        cur = getattr(rt, "_current", None)   # the thread the controlled scheduler runs
        who = f"{cur.name}:{cur.tid}" if cur is not None else "?"
        stack = _os_stack(cur) if cur is not None else " <no stack>"
        lines = [f"INFO: task {who} ran for more than {self.timeout_s:g} seconds without "
                 "reaching a scheduling point (controlled mode).",
                 f"      no scheduling point for {stalled:.2f} s after step {rt.step}; every "
                 "other thread waits for it to yield",
                 "Call Trace:", stack, ""]
        lines += self._all_locks() + ["", "Showing all tasks:", rt.dump_stacks()]
        rt.report("hung-task",
                  f"task {who} made no scheduling point for more than {self.timeout_s:g} "
                  "seconds (controlled mode)", "\n".join(lines), thread=cur,
                  step=rt.step, stalled_s=round(stalled, 3),
                  stack=[ln.strip() for ln in stack.splitlines()])

    def _all_locks(self) -> list[str]:
        out = ["Showing all locks held in the system:"]
        for t in list(self.rt.threads):
            held = list(t.held)
            if held and t.state != "done":
                out.append(f"{len(held)} lock{'s' if len(held) > 1 else ''} held by "
                           f"{t.name}/{t.tid}:")
                out += _stacks.held_locks(held)
        return out


def run_delay_s(ident: int | None) -> float:
    """Seconds the OS thread ``ident`` has waited on a run queue (0.0 if unknown).

    Linux's /proc/self/task/TID/schedstat: run time, run-queue wait, slices
    (schedstats, updated when the thread next gets a CPU).
    """
    if ident is None:
        return 0.0
    native = next((th.native_id for th in threading.enumerate() if th.ident == ident), None)
    if native is None:
        return 0.0
    try:
        with open(f"/proc/self/task/{native}/schedstat", "rb") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def _os_stack(t: Any) -> str:
    """The live Python stack of a managed thread, innermost first (ksync frames included)."""
    os_t = getattr(t, "os_thread", None)
    f = sys._current_frames().get(os_t.ident) if os_t is not None else None
    out = []
    while f is not None and len(out) < 30:
        out.append(f" {f.f_code.co_filename}:{f.f_lineno} {f.f_code.co_name}")
        f = f.f_back
    return "\n".join(out) if out else " <no stack>"


class _Khungtaskd:
    """The one watchdog thread of the process and the checkers it looks after.

    A look happens under ``_lock``, which ``unwatch`` takes too: a checker
    taken off the list is not in the middle of a look when ``finish`` returns.
    After ``fork()`` the child starts with no thread and an empty list.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._watched: list[HungTask] = []
        self._thread: threading.Thread | None = None
        self._parked = False        # waiting with no timeout: only watch() wakes it

    def watch(self, c: HungTask) -> None:
        with self._lock:
            self._watched.append(c)
            if self._thread is None:
                # It serves every later runtime too: not the CPU the starting run is pinned to.
                mask = getattr(c.rt, "_old_mask", None)
                self._thread = threading.Thread(target=self._run, args=(mask,),
                                                name="khungtaskd", daemon=True)
                self._thread.start()
            if self._parked:
                # A polling thread will see the newcomer at its next look; a
                # wake-up per runtime would cost a context switch per run.
                self._cond.notify()

    def unwatch(self, c: HungTask) -> None:
        with self._lock:
            if c in self._watched:
                self._watched.remove(c)

    def _run(self, mask: set[int] | None) -> None:
        if mask is not None:
            affinity.restore(mask)
        idle_since = None
        with self._lock:
            while True:
                if not self._watched:
                    # Runs come back to back in a campaign: keep polling a while
                    # before parking, so that the next watch() need not wake us.
                    now = time.monotonic()
                    idle_since = idle_since or now
                    if now - idle_since < PARK_AFTER_S:
                        self._cond.wait(POLL_S)
                        continue
                    self._parked = True
                    self._cond.wait()
                    self._parked = False
                    continue
                idle_since = None
                self._cond.wait(min(c.poll_s for c in self._watched))
                now = time.monotonic()
                for c in list(self._watched):
                    c.look(now)

    def after_fork_in_child(self) -> None:
        self.__init__()  # type: ignore[misc]


_KHUNGTASKD = _Khungtaskd()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_KHUNGTASKD.after_fork_in_child)
