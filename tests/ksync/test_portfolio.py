"""The portfolio and preemption-bounded strategies (ksync.portfolio, ksync.preempt).

Specification: a portfolio seed runs one member, fixed by the seed alone and
built with that seed; its schedule string replays it like any other run;
the preemption-bounded sampler preempts only at its drawn points.  And the
strategy modules import downward only (ksync.strategy_base at the bottom).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ksync
from ksync.portfolio import DEFAULT_MEMBERS, PortfolioStrategy, build_member
from ksync.preempt import PreemptionBoundedStrategy
from ksync.strategy import STRATEGY_NAMES, make_strategy


def _three_counters(rt: ksync.Runtime) -> None:
    """Three threads doing read-then-write increments: many scheduling points, a lost update."""
    counter = ksync.Atomic(0, name="counter")

    def inc() -> None:
        for _ in range(4):
            v = counter.read()
            counter.set(v + 1)

    ts = [rt.spawn(inc, name=f"inc{i}") for i in range(3)]
    for t in ts:
        rt.join(t)
    if counter.read() != 12:
        rt.report("warn", "lost update", f"WARNING: counter is {counter.read()}, not 12")


def _run(strategy: object = None, seed: int = 0, schedule: str | None = None) -> ksync.Runtime:
    with ksync.Runtime(mode="controlled", seed=seed, strategy=strategy, schedule=schedule,
                       checks=()) as rt:
        _three_counters(rt)
    return rt


def test_portfolio_is_a_strategy_name_and_random_stays_one():
    assert STRATEGY_NAMES[0] == "portfolio" and "random" in STRATEGY_NAMES
    assert isinstance(make_strategy("portfolio", 3, None), PortfolioStrategy)
    assert type(make_strategy("random", 3, None)).__name__ == "RandomStrategy"


def test_portfolio_seed_picks_member_seed_mod_n_and_cycles_through_all():
    n = len(DEFAULT_MEMBERS)
    seen = [PortfolioStrategy(s).describe() for s in range(100, 100 + n)]
    assert sorted(seen) == sorted(DEFAULT_MEMBERS)
    assert PortfolioStrategy(7).describe() == DEFAULT_MEMBERS[7 % n]


@pytest.mark.parametrize("seed", range(len(DEFAULT_MEMBERS)))
def test_portfolio_schedules_exactly_as_its_member_spec_for_the_same_seed(seed):
    member = PortfolioStrategy(seed).describe()
    assert _run("portfolio", seed).schedule == _run(member, seed).schedule


def test_portfolio_seed_zero_mod_n_is_the_random_walk():
    n = len(DEFAULT_MEMBERS)
    for seed in (0, n, 5 * n):
        assert _run("portfolio", seed).schedule == _run("random", seed).schedule


def test_portfolio_same_seed_same_schedule_different_seeds_differ():
    runs = {seed: _run("portfolio", seed).schedule for seed in range(10)}
    assert all(_run("portfolio", s).schedule == sched for s, sched in runs.items())
    assert len(set(runs.values())) > 5


def test_portfolio_finding_replays_exactly_from_its_schedule_string():
    for seed in range(40):
        rt = _run("portfolio", seed)
        if rt.reports:
            break
    else:
        pytest.fail("no portfolio seed in 0..39 lost an update")
    again = _run(schedule=rt.schedule)
    assert again.schedule == rt.schedule
    assert [r.title for r in again.reports] == [r.title for r in rt.reports]


def test_portfolio_with_custom_members_and_bad_members():
    p = PortfolioStrategy(4, ["random", "pb:c=1,k=20"])
    assert p.describe() == "random" and PortfolioStrategy(5, ["random", "pb"]).describe() == "pb"
    with pytest.raises(ksync.KsyncError, match="member"):
        PortfolioStrategy(0, ["walk"])
    with pytest.raises(ksync.KsyncError, match="non-empty"):
        PortfolioStrategy(0, [])
    with pytest.raises(ksync.KsyncError, match="non-empty"):
        PortfolioStrategy(0, "random")


@pytest.mark.parametrize("spec", DEFAULT_MEMBERS)
def test_every_default_member_spec_builds(spec):
    assert build_member(spec, 1) is not None
    make_strategy(spec, 1, None)


class _Recorder(ksync.Strategy):
    """Wraps a strategy and counts the decisions that preempted a runnable thread."""

    def __init__(self, inner: ksync.Strategy) -> None:
        self.inner = inner
        self.preempted: list[int] = []

    def choose(self, runnable, current, step):
        t = self.inner.choose(runnable, current, step)
        if current in runnable and t is not current:
            self.preempted.append(step)
        return t


@pytest.mark.parametrize("seed", range(6))
def test_pb_preempts_only_at_its_drawn_points_within_k(seed):
    inner = PreemptionBoundedStrategy(seed, preemptions=2, steps=40)
    rec = _Recorder(inner)
    with ksync.Runtime(mode="controlled", strategy=rec, checks=()) as rt:
        _three_counters(rt)
    assert len(inner.points) == 2 and all(0 <= p < 40 for p in inner.points)
    within = [s for s in rec.preempted if s < 40]
    assert set(within) <= inner.points


def test_pb_without_preemptions_never_loses_an_update():
    for seed in range(20):
        rt = _run("pb:c=0,k=10000", seed)
        assert rt.reports == [], (seed, rt.schedule)


def test_pb_with_one_preemption_loses_an_update_for_some_seed():
    assert any(_run("pb:c=1,k=60", seed).reports for seed in range(40))


@pytest.mark.parametrize("spec", ["pb:c=-1", "pb:x=1", "pb:c=one", "pb:k=0", "portfolio:k=3"])
def test_bad_pb_and_portfolio_specs_are_clear_errors(spec):
    with pytest.raises(ksync.KsyncError, match="strategy|steps|bound"):
        make_strategy(spec, 0, None)


def test_strategy_modules_import_downward_only():
    """pct, preempt, portfolio and strategy_base never import ksync.strategy (no cycle)."""
    root = Path(ksync.__file__).parent
    for mod in ("strategy_base", "pct", "preempt", "portfolio"):
        tree = ast.parse((root / f"{mod}.py").read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = {node.module or ""} | {a.name for a in node.names}
                assert "strategy" not in names and node.module != "ksync.strategy", (mod, names)
            elif isinstance(node, ast.Import):
                assert all(a.name != "ksync.strategy" for a in node.names), mod
