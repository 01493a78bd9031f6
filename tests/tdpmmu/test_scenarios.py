"""Every scenario runs clean in every zap generation and both execution modes.

The correct model with every checker on must file no report and raise
nothing: 7 scenarios x 3 generations x (8 controlled seeds + 1 free run).
"""

from __future__ import annotations

import pytest

from tdpmmu.harness import run_scenario
from tdpmmu.kvm import ZAP_MODES
from tdpmmu.scenarios import SCENARIOS, UnknownScenario, get_scenario
from tdpmmu.scenarios.latency import lock_waits, max_read_hold_while_writer_waits

NAMES = ("max_guest_memory", "dirty_log", "memslot_churn", "teardown", "root_reload_storm",
         "mmu_notifier", "mixed")
CONTROLLED_SEEDS = range(8)


def test_all_issue_scenarios_are_registered_in_order() -> None:
    assert tuple(SCENARIOS) == NAMES


@pytest.mark.timeout(60)
@pytest.mark.parametrize("zap", ZAP_MODES)
@pytest.mark.parametrize("name", NAMES)
def test_scenario_is_clean_in_controlled_mode(name: str, zap: str) -> None:
    for seed in CONTROLLED_SEEDS:
        r = run_scenario(name, zap=zap, seed=seed, params={"variant": seed})
        assert r.clean, (seed, r.kinds(), r.error, [x.title for x in r.reports])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("zap", ZAP_MODES)
@pytest.mark.parametrize("name", NAMES)
def test_scenario_is_clean_in_free_mode(name: str, zap: str) -> None:
    r = run_scenario(name, zap=zap, mode="free", seed=1)
    assert r.clean, (r.kinds(), r.error, [x.title for x in r.reports])


@pytest.mark.timeout(60)
def test_controlled_run_is_a_pure_function_of_seed_and_variant() -> None:
    a = run_scenario("mixed", seed=5, params={"variant": 1})
    b = run_scenario("mixed", seed=5, params={"variant": 1})
    c = run_scenario("mixed", seed=6, params={"variant": 1})
    d = run_scenario("mixed", seed=5, params={"variant": 2})
    assert a.schedule == b.schedule and a.steps == b.steps
    assert a.schedule != c.schedule and a.schedule != d.schedule


def test_bad_variant_is_named() -> None:
    r = run_scenario("mixed", params={"variant": -1})
    assert "scenario mixed: variant=-1 must be an integer >= 0" in r.error


@pytest.mark.timeout(60)
def test_schedule_alone_replays_exactly() -> None:
    # The program comes from the variant parameter, not the seed.
    a = run_scenario("memslot_churn", seed=3, params={"variant": 2})
    b = run_scenario("memslot_churn", seed=99, schedule=a.schedule, params={"variant": 2})
    assert b.schedule == a.schedule and b.clean


def test_scenario_parameters_can_be_overridden_and_bad_ones_are_named() -> None:
    r = run_scenario("dirty_log", seed=0, params={"vcpus": 1, "iterations": 1})
    assert r.clean and r.params["vcpus"] == 1
    with pytest.raises(UnknownScenario, match="dirty_log has no parameter"):
        run_scenario("dirty_log", params={"nope": 1})
    r = run_scenario("teardown", params={"vcpus": 0})
    assert "teardown: vcpus=0 must be a positive integer" in r.error


def test_unknown_zap_mode_is_refused_with_the_scenario_named() -> None:
    with pytest.raises(UnknownScenario, match="scenario mixed: zap='later'"):
        get_scenario("mixed")(zap="later")


def test_lock_wait_measure_counts_steps_from_contention_to_acquisition() -> None:
    trace = [(1, "w", "acquire", "kvm->mmu_lock", "write"),
             (1, "w", "contended", "kvm->mmu_lock", "write"),
             (9, "w", "acquired", "kvm->mmu_lock", "write")]
    (w,) = lock_waits(trace)
    assert (w.thread, w.mode, w.steps) == ("w", "write", 8)


def test_read_hold_measure_counts_only_after_a_writer_waits() -> None:
    trace = [(0, "r", "acquired", "kvm->mmu_lock", "read"),
             (10, "w", "contended", "kvm->mmu_lock", "write"),
             (25, "r", "release", "kvm->mmu_lock", "read"),
             (26, "w", "acquired", "kvm->mmu_lock", "write")]
    assert max_read_hold_while_writer_waits(trace) == 15
    assert max_read_hold_while_writer_waits(trace[:1] + trace[2:3]) == 0
