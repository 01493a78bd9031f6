"""Sleep-in-atomic: a might-sleep point reached in atomic context.

Kernel counterpart: ``__might_sleep()`` / ``__might_resched()`` under
CONFIG_DEBUG_ATOMIC_SLEEP (kernel/sched/core.c), which prints "BUG: sleeping
function called from invalid context" when ``might_sleep()`` runs with
preemption disabled (a spinlock or rwlock_t held, or softirq context such as
an RCU callback) or inside an RCU read-side critical section.  The
primitives emit MIGHT_SLEEP from ``might_sleep``, ``Mutex.lock``,
``Completion.wait``, ``synchronize_rcu``, ``rcu_barrier``, ``msleep`` and
``cond_resched``.

Reported once per call site (the innermost frame outside ksync), like the
kernel's per-callsite rate limit.  Cost: two integer tests per MIGHT_SLEEP;
nothing for other events.
"""

from __future__ import annotations

import threading
from typing import Any

from .. import events as ev
from ..report import call_site
from . import _stacks

_MIGHT_SLEEP = ev.MIGHT_SLEEP


class AtomicSleep(ev.Checker):
    """The ``atomic_sleep`` checker."""

    name = "atomic_sleep"
    #: The event kinds on_event acts on (the runtime tells it no others).
    kinds = frozenset((_MIGHT_SLEEP,))

    def __init__(self) -> None:
        self._sites: set[str] = set()
        self._lk = threading.Lock()
        self.rt: Any = None

    def on_event(self, t: Any, kind: str, obj: Any, arg: Any) -> None:
        if kind is _MIGHT_SLEEP and (t.atomic > 0 or t.rcu_depth > 0):
            self._bad(t, arg)

    def _bad(self, t: Any, what: Any) -> None:
        site = call_site()
        with self._lk:
            if site in self._sites:
                return
            self._sites.add(site)
        held = list(t.held)
        spinning = sum(1 for lk, _m in held if getattr(lk, "atomic", False))
        reasons = []
        if spinning:
            names = ", ".join(_stacks.class_name(lk) for lk, _m in held
                              if getattr(lk, "atomic", False))
            reasons.append(f"with spinning lock(s) held: {names}")
        if t.atomic > spinning:
            reasons.append("in softirq context (an RCU callback)")
        if t.rcu_depth:
            reasons.append("inside an RCU read-side critical section")
        call = {None: "might_sleep()", "cond_resched": "cond_resched()",
                "msleep": "msleep()"}.get(what, str(what))
        stack = _stacks.capture(3)
        lines = [f"BUG: sleeping function called from invalid context at {site}",
                 f"in_atomic(): {int(t.atomic > 0)}, irqs_disabled(): 0, non_block: 0, "
                 f"pid: {t.tid}, name: {t.name}",
                 f"preempt_count: {t.atomic}, expected: 0",
                 f"RCU nest depth: {t.rcu_depth}, expected: 0",
                 f"{call} called " + "; ".join(reasons)]
        lines += self._held(t, held)
        lines += ["Call Trace:", _stacks.indented(stack, " ")]
        self.rt.report("sleep-in-atomic",
                       f"sleeping function called from invalid context at {site}: {call} "
                       + "; ".join(reasons),
                       "\n".join(lines), thread=t, site=site, call=call,
                       preempt_count=t.atomic, rcu_depth=t.rcu_depth,
                       held=[_stacks.class_name(lk) for lk, _m in held],
                       stack=_stacks.render(stack))

    def _held(self, t: Any, held: list) -> list[str]:
        if not held:
            return [f"no locks held by {t.name}/{t.tid}."]
        # lockdep, when on, knows where each held lock was taken.
        sites = None
        for c in self.rt.checkers:
            if c.name == "lockdep":
                sites = c.held_sites(t)
        n = len(held)
        return [f"{n} lock{'s' if n > 1 else ''} held by {t.name}/{t.tid}:",
                *_stacks.held_locks(held, sites)]
