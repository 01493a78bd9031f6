"""Exhaustive exploration of a tiny program's schedules, with a preemption bound.

Iterative context bounding (Musuvathi and Qadeer, PLDI 2007, as in CHESS):
most concurrency bugs need only a few *preemptions* — switches away from a
thread that could have gone on running.  Switches forced because the running
thread blocked or exited are free.

Guarantee: ``explore(body, preemption_bound=c)`` runs every distinct schedule
of ``body`` (every sequence of decisions at scheduling points) that has at
most ``c`` preemptions, each exactly once, unless ``max_runs`` stops it first
(then ``complete`` is False).  So a report reachable with at most ``c``
preemptions is found.  This holds when the program is deterministic given its
schedule: every thread switch, wait and source of randomness goes through the
runtime.  The number of schedules grows as roughly ``(n*k)**c`` for ``n``
threads and ``k`` decisions: meant for programs of a few threads and tens of
decisions.  For larger programs ``ksync.preempt`` samples the same bounded
space, one schedule per seed (a member of the default portfolio).

Kernel counterpart: none (a model checker for the model).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import KsyncError, ReplayDivergence
from .report import Report
from .runtime import Runtime
from .strategy import Strategy, encode_schedule


class _PrefixStrategy(Strategy):
    """Follows ``prefix`` exactly, then runs non-preemptively; records each decision."""

    name = "explore"

    def __init__(self, prefix: Sequence[int]) -> None:
        self.prefix = prefix
        # Per decision: (runnable tids, current tid if it could go on, chosen tid).
        self.log: list[tuple[tuple[int, ...], int | None, int]] = []

    def choose(self, runnable: Sequence[Any], current: Any, step: int) -> Any:
        tids = tuple(t.tid for t in runnable)
        cur = current.tid if current in runnable else None
        if step < len(self.prefix):
            want = self.prefix[step]
            if want not in tids:
                raise ReplayDivergence(step, f"explore: thread {want} is not runnable; the "
                                       "program is not deterministic given its schedule")
        else:
            want = cur if cur is not None else tids[0]
        self.log.append((tids, cur, want))
        return runnable[tids.index(want)]


@dataclass
class Failure:
    """One failing schedule found by ``explore``."""

    schedule: str
    preemptions: int
    reports: list[Report]


@dataclass
class ExploreResult:
    """``runs`` schedules executed; ``complete`` when the bound's space was exhausted."""

    runs: int
    complete: bool
    failures: list[Failure] = field(default_factory=list)


def count_preemptions(log: Iterable[tuple[tuple[int, ...], int | None, int]]) -> int:
    """Decisions that switched away from a thread that could have gone on."""
    return sum(1 for _, cur, chosen in log if cur is not None and chosen != cur)


def explore(body: Callable[[Runtime], Any], *, preemption_bound: int = 2,
            checks: Iterable[str] | None = None, max_runs: int = 10_000,
            stop_on_first: bool = False, max_steps: int | None = 20_000) -> ExploreResult:
    """Run ``body(rt)`` under every schedule with at most ``preemption_bound`` preemptions.

    ``body`` runs on the main thread of a fresh controlled ``Runtime`` each
    time.  A run that files a report (or raises) is a ``Failure``.
    """
    if preemption_bound < 0:
        raise KsyncError(f"explore(preemption_bound={preemption_bound}): must be >= 0")
    stack: list[tuple[list[int], int]] = [([], 0)]
    result = ExploreResult(runs=0, complete=False)
    while stack:
        if result.runs >= max_runs:
            return result
        prefix, used = stack.pop()
        strat = _PrefixStrategy(prefix)
        rt = Runtime(mode="controlled", strategy=strat, checks=checks, max_steps=max_steps)
        error: list[Report] = []
        try:
            with rt:
                body(rt)
        except ReplayDivergence:
            raise
        except Exception as e:  # noqa: BLE001 - a crash under some schedule is a failure
            error.append(Report("warn", f"{type(e).__name__}: {e}", str(e)))
        result.runs += 1
        if rt.reports or error:
            result.failures.append(Failure(encode_schedule(rt.decisions),
                                           count_preemptions(strat.log), rt.reports + error))
            if stop_on_first:
                return result
        # Branch at every decision this run reached first (those past the prefix).
        chosen = [c for _, _, c in strat.log]
        before = [used]       # preemptions before decision len(prefix) + j
        for _, cur, pick in strat.log[len(prefix):]:
            before.append(before[-1] + (cur is not None and pick != cur))
        for i in range(len(strat.log) - 1, len(prefix) - 1, -1):
            tids, cur, pick = strat.log[i]
            for alt in tids:
                if alt == pick:
                    continue
                cost = before[i - len(prefix)] + (1 if cur is not None and alt != cur else 0)
                if cost <= preemption_bound:
                    stack.append((chosen[:i] + [alt], cost))
    result.complete = True
    return result
