"""Probabilistic concurrency testing (PCT) for controlled mode.

Burckhardt, Kothari, Musuvathi and Nagarakatte, "A Randomized Scheduler with
Probabilistic Guarantees of Finding Bugs" (ASPLOS 2010).  The scheduler:

* gives every thread a distinct random priority when it first appears
  (initial priorities are all above ``depth``);
* picks ``depth - 1`` change points uniformly among the ``steps`` scheduling
  decisions it expects; at the i-th change point the thread that just ran
  drops to priority ``depth - i``, below every initial priority;
* at every decision runs the highest-priority runnable thread;
* past the ``steps`` decisions it expected, it picks uniformly at random
  (Coyote's "fair PCT"): strict priorities would let a thread that spins
  waiting for a lower-priority one (a ``cond_resched`` loop) starve it
  forever, turning a run into a livelock.  The change points all lie in the
  first ``steps`` decisions, so the guarantee below is unaffected.

For a program with ``n`` threads and ``k`` steps, each run finds a given bug
of depth ``d`` (``d`` ordering constraints between events) with probability
at least ``1 / (n * k ** (d - 1))``, against an exponentially small chance
for a random walk.  ``steps`` (k) is an estimate of the number of decisions a
run makes; campaigns measure it with a first run (``estimate_steps``).

Kernel counterpart: none; the nearest is KCSAN/syzkaller's schedule fuzzing.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from .errors import KsyncError
from .strategy_base import Strategy

#: k assumed when nobody measured the program (a few hundred decisions is
#: typical of the scenarios at their default sizes).
DEFAULT_STEPS = 500
DEFAULT_DEPTH = 3
#: Spec string keys (``pct:d=DEPTH,k=STEPS``) and the keywords they set.
SPEC_KEYS = {"d": "depth", "k": "steps"}


class PCTStrategy(Strategy):
    """PCT with bug depth ``depth`` over an expected ``steps`` decisions.

    Cost per decision: O(r) for r runnable threads (a max over them) plus a
    set lookup for the change points.
    """

    name = "pct"

    def __init__(self, seed: int = 0, depth: int = DEFAULT_DEPTH,
                 steps: int | None = None) -> None:
        if depth < 1:
            raise KsyncError(f"PCTStrategy(depth={depth}): the bug depth is at least 1")
        k = DEFAULT_STEPS if steps is None else steps
        if k < 1:
            raise KsyncError(f"PCTStrategy(steps={steps}): expect at least one decision")
        self.depth = depth
        self.steps = k
        self._rng = random.Random(seed)
        # Decision index -> the low priority given there (depth-1 .. 1).
        points = self._rng.sample(range(k), min(depth - 1, k))
        self.change_points = {p: depth - 1 - i for i, p in enumerate(points)}
        self._prio: dict[int, float] = {}

    def _priority(self, t: Any) -> float:
        p = self._prio.get(t.tid)
        if p is None:
            # A fresh thread ranks uniformly among those already present.
            p = self._prio[t.tid] = self.depth + self._rng.random()
        return p

    def choose(self, runnable: Sequence[Any], current: Any, step: int) -> Any:
        if step >= self.steps:
            return runnable[self._rng.randrange(len(runnable))]
        low = self.change_points.get(step)
        if low is not None:
            self._priority(current)
            self._prio[current.tid] = float(low)
        best = runnable[0]
        best_p = self._priority(best)
        for t in runnable[1:]:
            p = self._priority(t)
            if p > best_p:
                best, best_p = t, p
        return best

    def describe(self) -> str:
        """The strategy spec string that rebuilds this strategy for the same seed."""
        return f"pct:d={self.depth},k={self.steps}"
