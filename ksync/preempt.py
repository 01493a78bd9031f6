"""Preemption-bounded random sampling for controlled mode.

Musuvathi and Qadeer, "Iterative Context Bounding for Systematic Testing of
Multithreaded Programs" (PLDI 2007, the bound behind CHESS): most
concurrency bugs need only a few *preemptions*, switches away from a thread
that could have gone on running.  ``ksync.explore`` enumerates every
schedule within such a bound, which only a program of tens of decisions
affords.  This strategy samples that space instead, one schedule per seed:

* the thread at a scheduling point keeps running while it can;
* when it blocks or exits, the next one is picked uniformly at random (a
  forced switch costs no preemption);
* at ``preemptions`` decisions drawn uniformly among the first ``steps``,
  it switches to a uniformly chosen *other* runnable thread;
* past ``steps`` decisions it is a plain random walk, for the reason PCT
  is (``ksync.pct``): a thread that spins in a ``cond_resched`` loop waiting
  for another would otherwise keep the CPU forever.

A run without preemptions runs each thread to its next block, which no
random walk does: the shape of a bug where one thread must get far ahead
(a queued work that has not started when the VM is freed).

Kernel counterpart: none (a tester's scheduler, as in CHESS or Coyote).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from .errors import KsyncError
from .strategy_base import Strategy

#: k assumed when nobody measured the program (as for PCT).
DEFAULT_STEPS = 500
DEFAULT_PREEMPTIONS = 2
#: Spec string keys (``pb:c=PREEMPTIONS,k=STEPS``) and the keywords they set.
SPEC_KEYS = {"c": "preemptions", "k": "steps"}


class PreemptionBoundedStrategy(Strategy):
    """At most ``preemptions`` preemptions, at random decisions among the first ``steps``.

    Cost per decision: a membership test in the current thread's runnable
    list and a set lookup; a random draw only on a switch.
    """

    name = "pb"

    def __init__(self, seed: int = 0, preemptions: int = DEFAULT_PREEMPTIONS,
                 steps: int | None = None) -> None:
        if preemptions < 0:
            raise KsyncError(f"PreemptionBoundedStrategy(preemptions={preemptions}): "
                             "the bound is at least 0")
        k = DEFAULT_STEPS if steps is None else steps
        if k < 1:
            raise KsyncError(f"PreemptionBoundedStrategy(steps={steps}): expect at least "
                             "one decision")
        self.preemptions = preemptions
        self.steps = k
        self._rng = random.Random(seed)
        self._below = self._rng._randbelow
        self.points = frozenset(self._rng.sample(range(k), min(preemptions, k)))

    def choose(self, runnable: Sequence[Any], current: Any, step: int) -> Any:
        if step >= self.steps:
            return runnable[self._below(len(runnable))]
        if current in runnable:
            if step not in self.points:
                return current
            # A preemption: any runnable thread but the one that could go on.
            others = [t for t in runnable if t is not current]
            return others[self._below(len(others))]
        return runnable[self._below(len(runnable))]

    def describe(self) -> str:
        """The strategy spec string that rebuilds this strategy for the same seed."""
        return f"pb:c={self.preemptions},k={self.steps}"
