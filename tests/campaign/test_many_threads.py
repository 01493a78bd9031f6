"""Runs with 16 and more managed threads schedule, check and replay like small ones."""

from __future__ import annotations

import pytest

import ksync
from tdpmmu.harness import run_scenario

from .toys import lost_update


@pytest.mark.parametrize("strategy", ["random", "pct:d=3,k=100"])
def test_twenty_threads_run_and_replay_exactly(strategy):
    for seed in range(3):
        with ksync.Runtime(mode="controlled", seed=seed, strategy=strategy, trace=True) as a:
            lost_update(a, 20)
        assert len(a.threads) == 21
        with ksync.Runtime(mode="controlled", schedule=a.schedule, trace=True) as b:
            lost_update(b, 20)
        assert b.tracer.events == a.tracer.events
        assert [r.text for r in b.reports] == [r.text for r in a.reports]


@pytest.mark.timeout(60)
def test_scenario_with_sixteen_vcpus_runs_under_every_checker_and_replays():
    params = {"vcpus": 16, "pages": 16, "reloads": 1}
    a = run_scenario("root_reload_storm", seed=1, params=params, keep_runtime=True)
    names = [t.name for t in a.runtime.threads]
    assert sum(n.startswith("vcpu-") for n in names) == 16 and len(names) >= 18
    b = run_scenario("root_reload_storm", seed=1, params=params, schedule=a.schedule)
    assert b.schedule == a.schedule
    assert [(r.kind, r.title) for r in b.reports] == [(r.kind, r.title) for r in a.reports]
