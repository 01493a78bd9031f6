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

from .scenarios import get_scenario


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
                 keep_runtime: bool = False) -> RunResult:
    """Run scenario ``name`` once; unknown names and parameters raise ``UnknownScenario``."""
    sc = get_scenario(name)
    params = dict(params or {})
    bugs = tuple(sorted(set(bugs)))
    error = ""
    rt = ksync.Runtime(mode=mode, seed=seed, strategy=strategy, schedule=schedule,
                       checks=checks, trace=trace, max_steps=max_steps, noise=noise)
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
        runtime=rt if keep_runtime else None)
