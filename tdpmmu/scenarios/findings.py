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
                 bugs: tuple[str, ...] = (), checks=None, vary_program: bool = True) -> list[str]:
    """Run ``scenario`` once and return its finding kinds (``latency`` included when measured).

    The seed picks both the schedule and the program (``variant=seed``), so
    that consecutive seeds also vary sizes, delays and addresses; with
    ``vary_program=False`` only the schedule varies, as in ``tdpmmu fuzz``
    (the scenario's default variant).  ``bug``'s own scenario parameters
    (``Bug.params``) apply when it is given.
    """
    from ..harness import run_scenario
    from .latency import latency_finding
    want_latency = bug is not None and bug.expected_kind == "latency"
    params = {"variant": seed} if vary_program else {}
    params.update(dict(bug.params if bug is not None else ()))
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


def fuzz_campaign(name: str, first_seed: int, budget: int, depth: int = 3) -> CampaignResult:
    """Bug ``name`` as ``tdpmmu fuzz --strategy pct`` hunts it: the first run showing its kind.

    The same runs as ``tdpmmu fuzz --scenario S --zap Z --bug NAME --strategy pct
    --depth DEPTH --seed FIRST_SEED --runs BUDGET``: the bug's scenario in its
    generation with its parameters (``--bug`` brings ``Bug.params``) and the
    scenario's default program, PCT whose ``k`` is the decision count of one
    random-walk run at the first seed (the fuzz runner's ``estimate_steps``),
    seeds ``first_seed, first_seed + 1, ...``.  It stops at the first run that
    files the bug's expected kind (the fuzz campaign would go on and report it).
    """
    from ..harness import estimate_steps
    bug = BY_NAME.get(name)
    if bug is None:
        check_bug_names([name])
    if budget < 1:
        raise ValueError(f"fuzz_campaign({name!r}): budget {budget} must be positive")
    k = estimate_steps(bug.scenario, zap=bug.zap, bugs=(name,), params=dict(bug.params),
                       seed=first_seed)
    strategy = f"pct:d={depth},k={k}"
    seen: list[str] = []
    for i in range(budget):
        kinds = run_findings(bug, bug.scenario, zap=bug.zap, seed=first_seed + i,
                             strategy=strategy, bugs=(name,), vary_program=False)
        seen.extend(k for k in kinds if k not in seen)
        if bug.expected_kind in kinds:
            return CampaignResult(name, first_seed, budget, i + 1, True, tuple(seen))
    return CampaignResult(name, first_seed, budget, budget, False, tuple(seen))
