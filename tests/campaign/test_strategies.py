"""PCT, exhaustive exploration and strategy specs (ksync.pct, ksync.explore, ksync.strategy)."""

from __future__ import annotations

import statistics

import pytest

import ksync
from ksync.explore import explore
from ksync.pct import PCTStrategy
from ksync.strategy import make_strategy

from .toys import lost_update, window_bug


def _runs_to_first_report(strategy: str, base: int, cap: int = 300) -> int:
    for n in range(1, cap + 1):
        with ksync.Runtime(mode="controlled", seed=base * 10_000 + n, strategy=strategy,
                           checks=()) as rt:
            window_bug(rt)
        if rt.reports:
            return n
    return cap


def _decisions_of_window_bug() -> int:
    with ksync.Runtime(mode="controlled", seed=0, checks=()) as rt:
        window_bug(rt)
    return len(rt.decisions)


@pytest.mark.timeout(60)
def test_pct_finds_depth_two_bug_in_fewer_runs_than_random_walk_on_average():
    k = _decisions_of_window_bug()
    seeds = range(8)
    pct = statistics.mean(_runs_to_first_report(f"pct:d=2,k={k}", s) for s in seeds)
    rnd = statistics.mean(_runs_to_first_report("random", s) for s in seeds)
    assert pct < rnd, (pct, rnd)


def test_pct_runs_the_highest_priority_thread_until_it_blocks():
    # depth 1 means no change point: the run is the priority order, no preemption.
    s = PCTStrategy(seed=5, depth=1, steps=10)
    assert s.change_points == {}
    with ksync.Runtime(mode="controlled", strategy=s, checks=()) as rt:
        lost_update(rt)
    assert rt.reports == []


def test_pct_places_depth_minus_one_change_points_within_k():
    s = PCTStrategy(seed=1, depth=4, steps=50)
    assert len(s.change_points) == 3
    assert all(0 <= p < 50 for p in s.change_points)
    assert sorted(s.change_points.values()) == [1, 2, 3]


def test_pct_same_seed_gives_same_schedule():
    def once() -> str:
        with ksync.Runtime(mode="controlled", seed=9, strategy="pct:d=3,k=20", checks=()) as rt:
            window_bug(rt)
        return rt.schedule
    assert once() == once()


@pytest.mark.parametrize("spec", ["pct:d=0", "pct:x=3", "pct:d=two", "walk"])
def test_bad_strategy_specs_are_clear_errors(spec):
    with pytest.raises(ksync.KsyncError, match="strategy|depth"):
        make_strategy(spec, 0, None)


def test_explore_without_preemptions_cannot_lose_an_update():
    res = explore(lost_update, preemption_bound=0, checks=())
    assert res.complete and res.failures == []


def test_explore_with_one_preemption_finds_the_lost_update():
    res = explore(lost_update, preemption_bound=1, checks=())
    assert res.complete
    assert res.failures and all(f.preemptions == 1 for f in res.failures)
    # The failing schedule replays to the same report.
    with ksync.Runtime(mode="controlled", schedule=res.failures[0].schedule, checks=()) as rt:
        lost_update(rt)
    assert [r.title for r in rt.reports] == ["lost update"]


def test_explore_visits_each_schedule_once_within_the_bound():
    def always_reports(rt: ksync.Runtime) -> None:
        lost_update(rt)
        rt.report("warn", "mark", "mark")
    res = explore(always_reports, preemption_bound=2, checks=())
    schedules = [f.schedule for f in res.failures]
    assert res.complete and res.runs == len(schedules)
    assert len(set(schedules)) == len(schedules)
    assert all(f.preemptions <= 2 for f in res.failures)
    assert res.runs > explore(always_reports, preemption_bound=1, checks=()).runs


def test_explore_stops_at_max_runs_and_says_it_is_incomplete():
    res = explore(lambda rt: lost_update(rt, threads=3), preemption_bound=3, checks=(),
                  max_runs=5)
    assert res.runs == 5 and not res.complete


def test_pct_does_not_livelock_a_thread_spinning_on_a_lower_priority_one():
    def spin_wait(rt: ksync.Runtime) -> None:
        flag = ksync.Atomic(0, name="flag")

        def waiter() -> None:
            while flag.read() == 0:
                ksync.cond_resched()

        def setter() -> None:
            for _ in range(5):
                ksync.cond_resched()
            flag.set(1)

        ts = [rt.spawn(waiter, name="waiter"), rt.spawn(setter, name="setter")]
        for t in ts:
            rt.join(t)

    for seed in range(10):
        with ksync.Runtime(mode="controlled", seed=seed, strategy="pct:d=2,k=20",
                           max_steps=5_000) as rt:
            spin_wait(rt)
        assert rt.reports == [], (seed, [r.title for r in rt.reports])
