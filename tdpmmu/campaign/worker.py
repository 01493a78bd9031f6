"""What a worker process does: one run, or one shrink, turned into a JSON record.

Functions here are top-level so that any ``concurrent.futures`` executor can
pickle them.  Records are plain dicts, one JSON line each in the results file.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..harness import run_scenario
from .spec import CampaignSpec
from .verify import run_record, scenario_rerun, shrink

log = logging.getLogger("tdpmmu.campaign")


def run_one(spec_dict: dict[str, Any], seed: int) -> dict[str, Any]:
    """Run seed ``seed`` of the campaign; replay a finding before reporting it.

    The run itself saves no stacks (``stacks=False``: the same findings, about
    15% faster, and almost every run is clean).  A finding's schedule is then
    replayed with stacks on, and that replay's reports are the ones kept; the
    determinism check replays it once more.
    """
    spec = CampaignSpec.from_dict(spec_dict)
    if spec.script:         # a user's script (tdpmmu run --fuzz): same record, other program
        from .script import run_script_one
        return run_script_one(spec, seed)
    t0 = time.perf_counter()
    r = run_scenario(spec.scenario, zap=spec.zap, bugs=spec.bugs, params=spec.params,
                     checks=spec.checks, seed=seed, strategy=spec.strategy_spec(),
                     stacks=False)
    return run_record(seed, r, time.perf_counter() - t0, scenario_rerun(spec, seed))


def shrink_one(spec_dict: dict[str, Any], seed: int, schedule: str, kind: str,
               steps: int, time_limit: float = 30.0) -> dict[str, Any]:
    """Shrink the schedule of finding ``seed`` (kept failing with a ``kind`` report)."""
    spec = CampaignSpec.from_dict(spec_dict)
    if spec.script:
        from .script import shrink_script_one
        return shrink_script_one(spec, seed, schedule, kind, steps, time_limit)
    m = shrink(spec, seed, schedule, kind, steps, time_limit=time_limit)
    log.info("seed %d: schedule shrunk from %d to %d decisions, %d to %d preemptions "
             "(%d runs)", seed, m.original_decisions, m.decisions, m.original_preemptions,
             m.preemptions, m.attempts)
    return {"type": "minimised", "seed": seed, "schedule": m.schedule,
            "decisions": m.decisions, "preemptions": m.preemptions,
            "original_decisions": m.original_decisions,
            "original_preemptions": m.original_preemptions, "attempts": m.attempts}
