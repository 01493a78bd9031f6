"""Run one scenario under a fresh runtime and collect what happened.

This is the single place where the command line (``run``, ``replay``,
``fuzz``), the campaigns, the labs and the tests turn
(scenario, parameters, zap, bugs, mode, seed, strategy or schedule, checks)
into a ``RunResult``: the reports, the schedule string that replays the run,
the step count, and the event trace when asked for.

A scenario that raises (a model assertion, a ``ThreadFailed`` from a vCPU)
is not lost: the exception is kept in ``error`` with its traceback text, and
the campaign counts it as a finding.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import ksync

from .bugs import check_bug_names
from .kvm import ZAP_MODES
from .scenarios import UnknownScenario, get_scenario


@dataclass
class RunResult:
    """What one run produced.  ``clean`` means no report and no error."""

    scenario: str
    zap: str
    bugs: tuple[str, ...]
    mode: str
    seed: int
    strategy: str
    params: dict[str, Any]
    reports: list[ksync.Report]
    schedule: str
    steps: int
    error: str = ""
    trace: list[tuple] | None = None
    runtime: Any = field(default=None, repr=False)
    decisions: int = 0
    strategy_spec: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``tdpmmu run/replay --json``): ``{reports, schedule, ...}``."""
        return {"reports": [r.to_dict() for r in self.reports], "schedule": self.schedule,
                "scenario": self.scenario, "zap": self.zap, "bugs": list(self.bugs),
                "seed": self.seed, "strategy": self.strategy, "params": self.params,
                "steps": self.steps, "decisions": self.decisions, "error": self.error}

    @property
    def clean(self) -> bool:
        return not self.reports and not self.error

    def kinds(self) -> list[str]:
        """Report kinds in the order they were filed (``error`` for a crash)."""
        return [r.kind for r in self.reports] + (["error"] if self.error else [])


def run_scenario(name: str, *, zap: str = "async", bugs: Iterable[str] = (),
                 mode: str = "controlled", seed: int = 0,
                 strategy: ksync.Strategy | str | None = "random",
                 schedule: str | None = None, checks: Iterable[str] | None = None,
                 trace: bool = False, params: Mapping[str, Any] | None = None,
                 max_steps: int | None = 200_000, noise: float = 0.0,
                 keep_runtime: bool = False, stacks: bool = True) -> RunResult:
    """Run scenario ``name`` once; unknown names and parameters raise ``UnknownScenario``.

    ``strategy`` is ``random``, ``pct`` or ``pct:d=DEPTH,k=STEPS`` (see
    ``ksync.pct``), or a ``ksync.Strategy``; ``schedule`` replays a run.
    ``stacks=False`` saves no stack per event (same findings, faster; see
    ``ksync.Runtime``): a campaign's first pass.
    Unknown scenarios, parameters, zap modes and bugs are refused before the
    run starts (``UnknownScenario`` / ``UnknownBug``), never filed as a crash.
    """
    sc = get_scenario(name)
    params = dict(params or {})
    check_scenario_args(name, zap, bugs, params)
    bugs = tuple(sorted(set(bugs)))
    error = ""
    rt = ksync.Runtime(mode=mode, seed=seed, strategy=strategy, schedule=schedule,
                       checks=checks, trace=trace, max_steps=max_steps, noise=noise,
                       stacks=stacks)
    try:
        with rt:
            sc(zap=zap, bugs=bugs, **params)
    except ksync.ReplayDivergence:
        raise
    except Exception as e:  # noqa: BLE001 - a crash of the model is a finding, kept whole
        error = "".join(traceback.format_exception(e)).rstrip()
    strat = "replay" if schedule is not None else getattr(
        rt.strategy, "name", str(strategy)) if rt.strategy is not None else "free"
    return RunResult(
        scenario=name, zap=zap, bugs=bugs, mode=mode, seed=seed, strategy=strat,
        params={**sc.params, **params}, reports=list(rt.reports), schedule=rt.schedule,
        steps=rt.step, error=error,
        trace=list(rt.tracer.events) if rt.tracer is not None else None,
        runtime=rt if keep_runtime else None, decisions=len(rt.decisions),
        strategy_spec=strategy if isinstance(strategy, str) else strat)


def check_scenario_args(name: str, zap: str, bugs: Iterable[str],
                        params: Mapping[str, Any]) -> None:
    """Refuse an unknown scenario, zap mode, bug or parameter (before any run)."""
    sc = get_scenario(name)
    if zap not in ZAP_MODES:
        raise UnknownScenario(f"zap={zap!r} is not one of {', '.join(ZAP_MODES)}")
    check_bug_names(bugs)
    unknown = sorted(set(params) - set(sc.params))
    if unknown:
        raise UnknownScenario(f"scenario {name} has no parameter(s) {', '.join(unknown)}; "
                              f"it takes {', '.join(sc.params) or 'none'}")


def estimate_steps(name: str, *, zap: str = "async", bugs: Iterable[str] = (),
                   params: Mapping[str, Any] | None = None,
                   checks: Iterable[str] | None = None, seed: int = 0) -> int:
    """PCT's k for a scenario: the decisions one random-walk run makes (at least 1)."""
    r = run_scenario(name, zap=zap, bugs=bugs, params=params, checks=checks, seed=seed,
                     strategy="random")
    return max(1, r.decisions)
