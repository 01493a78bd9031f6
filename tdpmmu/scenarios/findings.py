"""What a run found, in catalogue terms: report kinds plus ``latency`` from the step measure.

Kernel counterpart: none; this is the glue between ``tdpmmu.harness`` runs
and the bug catalogue used by the bug campaigns and the tests.  A run's
findings are its report kinds (``error`` for a crash of the model) and,
for ``max_guest_memory``, ``latency`` when a reader kept ``mmu_lock`` past
``stall_bound`` while a writer waited.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..bugs import BY_NAME, Bug, check_bug_names


@dataclass(frozen=True)
class CampaignResult:
    """One campaign for one bug: runs until the expected kind was first seen, or the budget."""

    bug: str
    first_seed: int
    budget: int
    runs: int            # runs made; == the run that found it when found
    found: bool
    kinds: tuple[str, ...]


def run_findings(bug: Bug | None, scenario: str, *, zap: str, seed: int, strategy: str,
                 bugs: tuple[str, ...] = (), checks=None) -> list[str]:
    """Run ``scenario`` once and return its finding kinds (``latency`` included when measured).

    The seed picks both the schedule and the program (``variant=seed``), so
    that consecutive seeds also vary sizes, delays and addresses; ``bug``'s
    own scenario parameters (``Bug.params``) apply when it is given.
    """
    from ..harness import run_scenario
    from .latency import latency_finding
    want_latency = bug is not None and bug.expected_kind == "latency"
    params = {"variant": seed, **dict(bug.params if bug is not None else ())}
    # Only the kinds are wanted: no stacks (the same kinds, ~15% faster).
    r = run_scenario(scenario, zap=zap, seed=seed, strategy=strategy, bugs=bugs,
                     trace=want_latency, checks=checks, params=params, stacks=False)
    kinds = r.kinds()
    if want_latency and latency_finding(scenario, r.params, r.trace) is not None:
        kinds.append("latency")
    return kinds


def campaign(name: str, first_seed: int, budget: int) -> CampaignResult:
    """Run bug ``name``'s scenario over seeds ``first_seed, first_seed + 1, ...`` until a run
    shows the expected kind, at most ``budget`` runs (with the bug's zap mode and strategy)."""
    bug = BY_NAME.get(name)
    if bug is None:
        check_bug_names([name])          # raises UnknownBug listing the catalogue
    if budget < 1:
        raise ValueError(f"campaign({name!r}): budget {budget} must be positive")
    seen: list[str] = []
    for i in range(budget):
        kinds = run_findings(bug, bug.scenario, zap=bug.zap, seed=first_seed + i,
                             strategy=bug.strategy, bugs=(name,))
        seen.extend(k for k in kinds if k not in seen)
        if bug.expected_kind in kinds:
            return CampaignResult(name, first_seed, budget, i + 1, True, tuple(seen))
    return CampaignResult(name, first_seed, budget, budget, False, tuple(seen))
