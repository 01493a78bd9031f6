"""A user's script as a campaign's program: ``tdpmmu run SCRIPT.py --fuzz N``.

``execute_script`` runs the script once the way ``tdpmmu run`` does: its top
level on the main thread of a fresh ``ksync.Runtime``, with ``sys.argv`` and
``sys.path`` set as for ``python SCRIPT.py``.  ``script_result`` wraps one such
run in the harness's ``RunResult``, so that the campaign's replay check
(``verify.with_stacks``) and ``ksync.minimise`` treat a script exactly as they
treat a scenario.  ``run_script_one`` and ``shrink_script_one`` are what a
worker process does for a script campaign (``worker.run_one`` hands over to
them when the spec names a script).

Context: a worker process, one run at a time (``sys.argv``, ``sys.path`` and
``sys.stdout`` are process-wide, so two scripts must never run at once in one
process).
"""

from __future__ import annotations

import contextlib
import io
import logging
import runpy
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import ksync
from ksync.minimise import minimise

from ..harness import RunResult
from .spec import CampaignSpec
from .verify import Rerun, run_record

log = logging.getLogger("tdpmmu.campaign")


def execute_script(path: Path, argv: list[str] | tuple[str, ...],
                   **rt_kw: Any) -> tuple[ksync.Runtime, str]:
    """Run the script once under a fresh runtime; returns it and the script's crash text.

    A ``SystemExit`` with a non-zero status is a crash too; ``ReplayDivergence``
    (a schedule that does not fit) propagates to the caller.
    """
    rt = ksync.Runtime(**rt_kw)
    error = ""
    old_argv, old_path = sys.argv, list(sys.path)
    sys.argv = [str(path), *argv]
    sys.path.insert(0, str(Path(path).parent))
    try:
        with rt:
            runpy.run_path(str(path), run_name="__main__")
    except ksync.ReplayDivergence:
        raise
    except SystemExit as e:
        if e.code not in (None, 0):
            error = f"the script exited with status {e.code}"
    except Exception as e:  # noqa: BLE001 - the user's script failed: keep its traceback
        error = "".join(traceback.format_exception(e)).rstrip()
    finally:
        sys.argv, sys.path[:] = old_argv, old_path
    return rt, error


def script_result(spec: CampaignSpec, seed: int, *, strategy: Any = None,
                  schedule: str | None = None, trace: bool = False, stacks: bool = True,
                  max_steps: int | None = 200_000) -> RunResult:
    """One silent controlled run of the spec's script, as a ``RunResult``.

    The script's own output is swallowed: run a thousand times, it would
    drown the progress line and the summary.
    """
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        rt, error = execute_script(Path(spec.script), spec.script_args, mode="controlled",
                                   seed=seed, strategy=strategy, schedule=schedule,
                                   checks=spec.checks, trace=trace, max_steps=max_steps,
                                   stacks=stacks)
    return RunResult(scenario=spec.program(), zap="", bugs=(), mode="controlled", seed=seed,
                     strategy="replay" if schedule is not None else str(strategy),
                     params={}, reports=list(rt.reports), schedule=rt.schedule, steps=rt.step,
                     error=error,
                     trace=list(rt.tracer.events) if rt.tracer is not None else None,
                     decisions=len(rt.decisions))


def estimate_script_steps(spec: CampaignSpec) -> int:
    """PCT's k for a script: the decisions one random-walk run makes (at least 1)."""
    return max(1, script_result(spec, spec.seed, strategy="random").decisions)


def script_rerun(spec: CampaignSpec, seed: int) -> Rerun:
    """``rerun(schedule, trace)`` for run ``seed`` of the script campaign ``spec``."""
    def rerun(schedule: str, trace: bool) -> RunResult:
        return script_result(spec, seed, schedule=schedule, trace=trace)
    return rerun


def run_script_one(spec: CampaignSpec, seed: int) -> dict[str, Any]:
    """Seed ``seed`` of a script campaign as a ``run`` record (the shape of ``worker.run_one``).

    As for scenarios, the run saves no stacks and a finding is replayed with
    stacks on (and once more for determinism) before it is kept.
    """
    t0 = time.perf_counter()
    r = script_result(spec, seed, strategy=spec.strategy_spec(), stacks=False)
    return run_record(seed, r, time.perf_counter() - t0, script_rerun(spec, seed))


def shrink_script_one(spec: CampaignSpec, seed: int, schedule: str, kind: str, steps: int,
                      time_limit: float = 30.0) -> dict[str, Any]:
    """Shrink a script finding's schedule, keeping a ``kind`` report (``ksync.minimise``)."""
    budget = max(1000, 4 * steps)     # a candidate that spins cannot run away

    def attempt(strategy: ksync.Strategy) -> tuple[bool, list[int]]:
        r = script_result(spec, seed, strategy=strategy, stacks=False, max_steps=budget)
        # Out of budget is a livelock the candidate made, not the finding.
        return kind in r.kinds() and r.steps <= budget, ksync.decode_schedule(r.schedule)

    m = minimise(attempt, schedule, max_attempts=100, time_limit=time_limit)
    log.info("seed %d: script schedule shrunk from %d to %d decisions (%d runs)", seed,
             m.original_decisions, m.decisions, m.attempts)
    return {"type": "minimised", "seed": seed, "schedule": m.schedule,
            "decisions": m.decisions, "preemptions": m.preemptions,
            "original_decisions": m.original_decisions,
            "original_preemptions": m.original_preemptions, "attempts": m.attempts}
