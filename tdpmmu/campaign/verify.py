"""Before a finding is reported: does it replay?  And its shortest schedule.

``check_replay`` replays a failing run's schedule once; ``with_stacks``
first replays a finding made without stacks (a campaign's first pass) with
stacks on, so that what is reported has them.  If the replay
diverges (a thread the schedule names is not runnable, or the program asks
for more or fewer decisions) or files different reports, the run is flagged
as *uncontrolled nondeterminism*: something in the program bypasses the
runtime (an unseeded random, wall-clock time, a real lock).  The verdict names
the step where the replay diverged; when the schedule fitted but the reports
differ, two traced replays are compared to find the first differing event.

``shrink`` runs ``ksync.minimise`` on a scenario's failing schedule.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ksync
from ksync.minimise import Minimised, minimise

from ..harness import RunResult, run_scenario

log = logging.getLogger("tdpmmu.campaign")


@dataclass
class Verdict:
    """``reproducible`` or not; ``divergence`` says where and how the replay differed."""

    reproducible: bool
    divergence: str = ""
    step: int | None = None


def result_signature(r: RunResult) -> list[tuple[str, str]]:
    """What a replay must reproduce: each report's kind and title, and a crash's last line."""
    sig = [(rep.kind, rep.title) for rep in r.reports]
    if r.error:
        sig.append(("error", r.error.splitlines()[-1]))
    return sig


Rerun = Callable[[str, bool], RunResult]


def check_replay(rerun: Rerun, original: RunResult) -> Verdict:
    """Replay ``original.schedule`` once through ``rerun(schedule, trace)``."""
    try:
        again = rerun(original.schedule, False)
    except ksync.ReplayDivergence as e:
        return Verdict(False, f"uncontrolled nondeterminism: {e}", e.step)
    want, got = result_signature(original), result_signature(again)
    if want == got:
        return Verdict(True)
    where = _first_trace_difference(rerun, original.schedule)
    return Verdict(False, f"uncontrolled nondeterminism: the schedule replayed but the reports "
                          f"differ ({_kinds(want)} then {_kinds(got)}){where[0]}", where[1])


def run_record(seed: int, stackless: RunResult, seconds: float,
               rerun: Rerun) -> dict[str, Any]:
    """The ``run`` record of one campaign run made with ``stacks=False``.

    A clean run is its counts; a dirty one is replayed with stacks on
    (``with_stacks``) and carries that replay's schedule, reports and
    verdict.  Scenario and script campaigns (worker.py, script.py) share it.
    """
    r = stackless
    rec: dict[str, Any] = {"type": "run", "seed": seed, "clean": r.clean, "steps": r.steps,
                           "decisions": r.decisions, "seconds": round(seconds, 6)}
    if r.clean:
        return rec
    r, verdict = with_stacks(rerun, r)
    reports = [{"kind": x.kind, "title": x.title, "text": x.text} for x in r.reports]
    if r.error:
        reports.append({"kind": "error", "title": r.error.splitlines()[-1], "text": r.error})
    rec.update(schedule=r.schedule, reports=reports, reproducible=verdict.reproducible,
               divergence=verdict.divergence, divergence_step=verdict.step)
    log.info("seed %d: %s%s", seed, ", ".join(f"{x['kind']}: {x['title']}" for x in reports),
             "" if verdict.reproducible else f" [{verdict.divergence}]")
    return rec


def with_stacks(rerun: Rerun, stackless: RunResult) -> tuple[RunResult, Verdict]:
    """The run to report for a finding made with ``stacks=False``, and its verdict.

    ``rerun`` replays with stacks on.  That replay must fit the schedule and
    file the same kinds of report (their number may differ: without stacks,
    reports are told apart by location only); then ``check_replay`` replays
    it once more.  If the first replay fails, the stackless run is returned
    with the verdict that says why (the replay may even be clean: a finding
    keeps the reports it was found with).
    """
    try:
        shown = rerun(stackless.schedule, False)
    except ksync.ReplayDivergence as e:
        return stackless, Verdict(False, f"uncontrolled nondeterminism: {e}", e.step)
    want, got = set(stackless.kinds()), set(shown.kinds())
    if want != got:
        return stackless, Verdict(False, "uncontrolled nondeterminism: the replay with stacks "
                                     f"filed {sorted(got)} where the run filed {sorted(want)}")
    return shown, check_replay(rerun, shown)


def _kinds(sig: list[tuple[str, str]]) -> str:
    return "[" + ", ".join(k for k, _ in sig) + "]"


def _first_trace_difference(rerun: Rerun, schedule: str) -> tuple[str, int | None]:
    try:
        a = rerun(schedule, True).trace or []
        b = rerun(schedule, True).trace or []
    except ksync.ReplayDivergence as e:
        return f"; a traced replay diverged at decision {e.step}", e.step
    for ea, eb in zip(a, b, strict=False):
        if ea != eb:
            return (f"; two traced replays first differ at step {ea[0]}: {ea[1:]} vs "
                    f"{eb[1:]}", ea[0])
    if len(a) != len(b):
        return f"; traced replays differ in length ({len(a)} vs {len(b)} events)", None
    return "", None


def scenario_rerun(spec: Any, seed: int) -> Rerun:
    """``rerun(schedule, trace)`` for run ``seed`` of campaign ``spec``."""
    def rerun(schedule: str, trace: bool) -> RunResult:
        return run_scenario(spec.scenario, zap=spec.zap, bugs=spec.bugs, params=spec.params,
                            checks=spec.checks, seed=seed, schedule=schedule, trace=trace)
    return rerun


def shrink(spec: Any, seed: int, schedule: str, kind: str, steps: int, *,
           max_attempts: int = 100, time_limit: float | None = 30.0) -> Minimised:
    """Shrink a failing schedule of ``spec`` that files a ``kind`` report (see ksync.minimise)."""
    budget = max(1000, 4 * steps)     # a candidate that spins cannot run away

    def attempt(strategy: ksync.Strategy) -> tuple[bool, list[int]]:
        # Only the kinds matter here: no stacks (the same kinds, faster).
        r = run_scenario(spec.scenario, zap=spec.zap, bugs=spec.bugs, params=spec.params,
                         checks=spec.checks, seed=seed, strategy=strategy, max_steps=budget,
                         stacks=False)
        # A candidate that ran out of budget is a livelock of our making, and
        # would replay differently under the default budget: not a failure.
        return kind in r.kinds() and r.steps <= budget, ksync.decode_schedule(r.schedule)

    return minimise(attempt, schedule, max_attempts=max_attempts, time_limit=time_limit)
