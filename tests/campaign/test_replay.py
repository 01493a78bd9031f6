"""Replay fidelity, divergence, and the determinism check before a finding is reported."""

from __future__ import annotations

import pytest

import ksync
from tdpmmu.campaign.spec import CampaignSpec
from tdpmmu.campaign.verify import check_replay, scenario_rerun
from tdpmmu.harness import run_scenario

from .toys import lost_update, window_bug


def _summary(r):
    return [(x.kind, x.title, x.text) for x in r.reports]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("strategy", ["random", "pct:d=3,k=300"])
def test_schedule_replays_to_identical_trace_and_reports_over_many_seeds(strategy):
    small = {"vcpus": 3, "pages": 8, "reloads": 1}
    for seed in range(6):
        a = run_scenario("root_reload_storm", seed=seed, strategy=strategy, trace=True,
                         params=small)
        b = run_scenario("root_reload_storm", seed=seed + 1000, schedule=a.schedule,
                         trace=True, params=small)
        assert b.trace == a.trace and _summary(b) == _summary(a)
        assert b.schedule == a.schedule


def test_toy_replays_identically_including_its_reports_over_many_seeds():
    seen_report = False
    for seed in range(60):
        with ksync.Runtime(mode="controlled", seed=seed, trace=True) as a:
            lost_update(a, 3)
        with ksync.Runtime(mode="controlled", schedule=a.schedule, trace=True) as b:
            lost_update(b, 3)
        assert b.tracer.events == a.tracer.events
        assert [r.text for r in b.reports] == [r.text for r in a.reports]
        seen_report |= bool(a.reports)
    assert seen_report


def test_schedule_of_another_program_diverges_naming_the_step():
    with ksync.Runtime(mode="controlled", seed=4, checks=()) as a:
        window_bug(a)
    with pytest.raises(ksync.ReplayDivergence, match=r"diverged at decision \d+") as e:
        with ksync.Runtime(mode="controlled", schedule=a.schedule, checks=()) as b:
            lost_update(b, 3)
    assert e.value.step >= 0


def test_schedule_longer_than_the_run_is_a_divergence_at_its_end():
    with ksync.Runtime(mode="controlled", seed=2, checks=()) as a:
        lost_update(a)
    n = len(a.decisions)
    with pytest.raises(ksync.ReplayDivergence, match="ended after") as e:
        with ksync.Runtime(mode="controlled", schedule=a.schedule + ".0x40", checks=()) as b:
            lost_update(b)
    assert e.value.step == n


def test_a_finding_that_replays_is_reproducible(toys):
    spec = CampaignSpec("toy_lost_update")
    r = next(r for s in range(50) if not (r := run_scenario("toy_lost_update", seed=s)).clean)
    v = check_replay(scenario_rerun(spec, r.seed), r)
    assert v.reproducible and v.divergence == ""


def test_uncontrolled_nondeterminism_is_flagged_with_the_diverging_step(toys):
    spec = CampaignSpec("toy_flaky")
    flagged = []
    for seed in range(30):
        r = run_scenario("toy_flaky", seed=seed)
        v = check_replay(scenario_rerun(spec, seed), r)
        if not v.reproducible:
            flagged.append(v)
    assert flagged, "os.urandom should make some replays diverge"
    for v in flagged:
        assert "uncontrolled nondeterminism" in v.divergence
        assert v.step is not None and f"decision {v.step}" in v.divergence
