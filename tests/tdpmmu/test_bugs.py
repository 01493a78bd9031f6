"""Each catalogued bug, switched on, is found in its scenario with its expected kind.

Budget: a campaign runs the bug's scenario (in the bug's zap generation,
with its strategy) over consecutive seeds until a run shows the expected
kind; here at most ``SMALL_BUDGET`` runs per campaign, two campaigns on
distinct seed ranges for the quick bugs.  tools/bug_campaign.py runs the
full budget over many campaigns.  The same scenario without the bug stays
clean over the same seeds.
"""

from __future__ import annotations

import pytest

from tdpmmu.bugs import BY_NAME, CATALOGUE, UnknownBug, check_bug_names
from tdpmmu.scenarios import SCENARIOS
from tdpmmu.scenarios.findings import campaign, run_findings

SMALL_BUDGET = 12
#: Bugs a small campaign finds from either seed range.
QUICK = ("flush-under-mmu-lock", "worker-zap-without-mmu-lock", "zap-without-yield",
         "zap-root-in-one-pass", "zap-on-last-put")
#: Bugs whose find rate per run is lower: one campaign from seed 0, larger budget.
SLOW = {"no-flush-before-free": 20, "non-atomic-shared-zap": 40,
        "get-root-without-inc-not-zero": 20, "free-page-table-without-rcu": 10,
        "skip-invalid-roots-on-notifier": 10, "no-users-count-check": 30}


def test_catalogue_names_scenarios_and_kinds_that_exist() -> None:
    from ksync import KINDS
    for b in CATALOGUE:
        assert b.scenario in SCENARIOS, b.name
        assert b.expected_kind in (*KINDS, "latency"), b.name
        assert b.zap in ("sync", "async", "preserve") and b.strategy in ("random", "pct")
        assert b.kernel_ref and b.interleaving.count(".") >= 2
        assert set(dict(b.params)) <= set(SCENARIOS[b.scenario].params), b.name


def test_unknown_bug_name_lists_the_catalogue() -> None:
    with pytest.raises(UnknownBug, match="known: no-flush-before-free"):
        check_bug_names(["no-such-bug"])
    with pytest.raises(UnknownBug, match="no-such-bug"):
        campaign("no-such-bug", 0, 1)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("first_seed", (0, 1000))
@pytest.mark.parametrize("name", QUICK)
def test_small_campaign_finds_quick_bug_with_expected_kind(name: str, first_seed: int) -> None:
    res = campaign(name, first_seed, SMALL_BUDGET)
    assert res.found, (name, first_seed, res.kinds)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", sorted(SLOW))
def test_campaign_finds_slower_bug_with_expected_kind(name: str) -> None:
    res = campaign(name, 0, SLOW[name])
    assert res.found, (name, res.kinds)


@pytest.mark.timeout(120)
def test_reuse_invalid_root_is_found_as_a_warn() -> None:
    # One run: the WARN comes at once, the livelock that follows costs seconds.
    res = campaign("reuse-invalid-root", 0, 1)
    assert res.found, res.kinds


@pytest.mark.timeout(90)
@pytest.mark.parametrize("name", [b.name for b in CATALOGUE])
def test_same_scenario_without_the_bug_is_clean(name: str) -> None:
    bug = BY_NAME[name]        # with the bug's own scenario parameters (Bug.params)
    for seed in range(3):
        kinds = run_findings(bug, bug.scenario, zap=bug.zap, seed=seed, strategy="random")
        assert kinds == [], (name, seed, kinds)
