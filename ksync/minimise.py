"""Shrinking a failing schedule: fewer preemptions, fewer decisions, still failing.

A candidate schedule is replayed *leniently* (``GuidedStrategy``): each
decision takes the recorded thread when it is runnable, otherwise the thread
that was running (no preemption), and past the end of the list the run goes
on without preemptions.  Whatever actually ran is recorded by the runtime,
so an accepted candidate is an exact, strictly replayable schedule.

``minimise`` tries, in rounds, (1) the shortest failing prefix (binary
search), (2) dropping one run of consecutive decisions, (3) merging a run
into the one before it (removing a context switch).  A candidate is kept only
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


def minimise(attempt: Attempt, schedule: str, *, max_attempts: int = 200,
             time_limit: float | None = None) -> Minimised:
    """Shrink failing ``schedule`` using ``attempt``; at most ``max_attempts`` runs."""
    deadline = None if time_limit is None else time.monotonic() + time_limit
    tries = 0

    def run(prefs: Sequence[int]) -> tuple[bool, list[int], int]:
        nonlocal tries
        tries += 1
        g = GuidedStrategy(prefs)
        failed, made = attempt(g)
        return failed, made, g.preemptions

    original = decode_schedule(schedule)
    failed, best, best_p = run(original)
    limit_len = len(best)
    if not failed:      # not reproducible: hand back what we were given
        return Minimised(schedule, len(original), best_p, len(original), best_p, tries)
    limit_p = best_p

    def budget_left() -> bool:
        return tries < max_attempts and (deadline is None or time.monotonic() < deadline)

    def better(prefs: Sequence[int]) -> bool:
        nonlocal best, best_p
        failed, made, p = run(prefs)
        if (failed and p <= limit_p and len(made) <= limit_len
                and (p, len(made)) < (best_p, len(best))):
            best, best_p = made, p
            return True
        return False

    improved = True
    while improved and budget_left():
        improved = False
        # (1) Shortest failing prefix; past it the run goes on without preemptions.
        lo, hi = 0, len(best)
        while lo < hi and budget_left():
            mid = (lo + hi) // 2
            if better(best[:mid]):
                improved = True
                hi = min(mid, len(best))
            else:
                lo = mid + 1
        # (2) Drop a run of decisions; (3) merge a run into its predecessor.
        for merge in (False, True):
            k = len(_blocks(best)) - 1
            while k >= (1 if merge else 0) and budget_left():
                blocks = _blocks(best)
                if k >= len(blocks):
                    k = len(blocks) - 1
                    continue
                s, e, _ = blocks[k]
                if merge:
                    cand = best[:s] + [blocks[k - 1][2]] * (e - s) + best[e:]
                else:
                    cand = best[:s] + best[e:]
                if better(cand):
                    improved = True
                k -= 1
    return Minimised(encode_schedule(best), len(best), best_p, len(original), limit_p, tries)
