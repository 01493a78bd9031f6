"""Shrinking a failing schedule: fewer preemptions, fewer decisions, still failing.

A candidate schedule is replayed *leniently* (``GuidedStrategy``): each
decision takes the recorded thread when it is runnable, otherwise the thread
that was running (no preemption), and past the end of the list the run goes
on without preemptions.  Whatever actually ran is recorded by the runtime,
so an accepted candidate is an exact, strictly replayable schedule.

``minimise`` tries, in rounds, (1) merging chunks of runs of consecutive
decisions into the run before them (ddmin over context switches), (2)
reordering runs so that a thread's next run joins its previous one (each
thread keeps its steps, one switch fewer), (3) the shortest failing prefix
(binary search), (4) dropping one run at a time.  A candidate is kept only
if it still fails, has no more preemptions and no more decisions than the
original, and is strictly better as (preemptions, decisions): the result is
never longer than what it started from.

Kernel counterpart: none (syzkaller's reproducer minimisation plays this part).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .strategy import Strategy, decode_schedule, encode_schedule


class GuidedStrategy(Strategy):
    """Prefers the recorded decisions; never fails to choose.  Counts preemptions."""

    name = "guided"

    def __init__(self, decisions: Sequence[int]) -> None:
        self.prefs = decisions
        self.preemptions = 0

    def choose(self, runnable: Sequence[Any], current: Any, step: int) -> Any:
        can_go_on = current in runnable
        pick = None
        if step < len(self.prefs):
            want = self.prefs[step]
            for t in runnable:
                if t.tid == want:
                    pick = t
                    break
        if pick is None:
            pick = current if can_go_on else runnable[0]
        if can_go_on and pick is not current:
            self.preemptions += 1
        return pick


#: ``attempt(strategy)`` runs the program once under ``strategy`` and returns
#: (still fails?, the decisions the run actually made).
Attempt = Callable[[Strategy], tuple[bool, list[int]]]


@dataclass
class Minimised:
    """The shrunk schedule and what it cost to get it."""

    schedule: str
    decisions: int
    preemptions: int
    original_decisions: int
    original_preemptions: int
    attempts: int


def _blocks(decisions: Sequence[int]) -> list[tuple[int, int, int]]:
    """Runs of equal decisions as (start, end, tid)."""
    out = []
    i = 0
    while i < len(decisions):
        j = i
        while j < len(decisions) and decisions[j] == decisions[i]:
            j += 1
        out.append((i, j, decisions[i]))
        i = j
    return out


def _merged(decisions: list[int], blocks: list[tuple[int, int, int]],
            chunk: set[int]) -> list[int]:
    """``decisions`` with each block in ``chunk`` handed to the thread before it."""
    out = list(decisions)
    prev = blocks[0][2]
    for k, (s, e, tid) in enumerate(blocks):
        if k in chunk:
            out[s:e] = [prev] * (e - s)
        else:
            prev = tid
    return out


class _Shrinker:
    """The best failing schedule so far and the budget left to improve it."""

    def __init__(self, attempt: Attempt, max_attempts: int, deadline: float | None) -> None:
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.deadline = deadline
        self.tries = 0
        self.best: list[int] = []
        self.best_p = 0
        self.limit_len = 0
        self.limit_p = 0

    def run(self, prefs: Sequence[int]) -> tuple[bool, list[int], int]:
        self.tries += 1
        g = GuidedStrategy(prefs)
        failed, made = self.attempt(g)
        return failed, made, g.preemptions

    def budget_left(self) -> bool:
        return self.tries < self.max_attempts and (
            self.deadline is None or time.monotonic() < self.deadline)

    def better(self, prefs: Sequence[int]) -> bool:
        """Run ``prefs``; keep the result if it fails and beats the best, within the limits."""
        failed, made, p = self.run(prefs)
        if (failed and p <= self.limit_p and len(made) <= self.limit_len
                and (p, len(made)) < (self.best_p, len(self.best))):
            self.best, self.best_p = made, p
            return True
        return False

    def merge_switches(self) -> bool:
        """Delta debugging (Zeller's ddmin) over context switches: merge chunks of runs.

        Tries halves, then quarters, ... of the switches at once, so a schedule
        whose failure needs few of its switches sheds the rest in O(log n) rounds.
        """
        improved = False
        n = 2
        while self.budget_left():
            blocks = _blocks(self.best)
            idx = list(range(1, len(blocks)))
            if not idx:
                break
            n = min(n, len(idx))
            size = -(-len(idx) // n)
            for start in range(0, len(idx), size):
                if not self.budget_left():
                    return improved
                if self.better(_merged(self.best, blocks, set(idx[start:start + size]))):
                    improved = True
                    n = max(n - 1, 2)
                    break
            else:
                if size == 1:
                    break
                n = min(n * 2, len(idx))
        return improved

    def pull_forward(self) -> bool:
        """Remove a switch A->B by moving A's next run up to join the run before B.

        Each thread keeps the same runs of steps, only their order changes,
        so the candidate stays close to the failing interleaving.
        """
        improved = False
        k = 1
        while self.budget_left():
            blocks = _blocks(self.best)
            if k >= len(blocks):
                break
            a = blocks[k - 1][2]
            j = next((j for j in range(k + 1, len(blocks)) if blocks[j][2] == a), None)
            if j is not None:
                sk, (sj, ej) = blocks[k][0], blocks[j][:2]
                b = self.best
                if self.better(b[:sk] + b[sj:ej] + b[sk:sj] + b[ej:]):
                    improved = True
                    continue
            k += 1
        return improved

    def shortest_prefix(self) -> bool:
        """Binary search for the shortest failing prefix (the rest runs without preemption)."""
        improved = False
        lo, hi = 0, len(self.best)
        while lo < hi and self.budget_left():
            mid = (lo + hi) // 2
            if self.better(self.best[:mid]):
                improved = True
                hi = min(mid, len(self.best))
            else:
                lo = mid + 1
        return improved

    def drop_runs(self) -> bool:
        """Drop one run of decisions at a time, from the end."""
        improved = False
        k = len(_blocks(self.best)) - 1
        while k >= 0 and self.budget_left():
            blocks = _blocks(self.best)
            if k < len(blocks):
                s, e, _ = blocks[k]
                improved |= self.better(self.best[:s] + self.best[e:])
            k -= 1
        return improved


def minimise(attempt: Attempt, schedule: str, *, max_attempts: int = 200,
             time_limit: float | None = None) -> Minimised:
    """Shrink failing ``schedule`` using ``attempt``; at most ``max_attempts`` runs."""
    deadline = None if time_limit is None else time.monotonic() + time_limit
    sh = _Shrinker(attempt, max_attempts, deadline)
    original = decode_schedule(schedule)
    failed, made, p = sh.run(original)
    if not failed:      # not reproducible: hand back what we were given
        return Minimised(schedule, len(original), p, len(original), p, sh.tries)
    sh.best, sh.best_p, sh.limit_len, sh.limit_p = made, p, len(made), p
    improved = True
    while improved and sh.budget_left():
        improved = sh.merge_switches()
        improved |= sh.pull_forward()
        improved |= sh.shortest_prefix()
        improved |= sh.drop_runs()
    return Minimised(encode_schedule(sh.best), len(sh.best), sh.best_p, len(original),
                     sh.limit_p, sh.tries)
