"""Minimisation: the shrunk schedule still fails and is never longer (ksync.minimise)."""

from __future__ import annotations

import pytest

import ksync
from ksync.minimise import GuidedStrategy, minimise

from .toys import lost_update, window_bug


def _attempt(body):
    def attempt(strategy):
        with ksync.Runtime(mode="controlled", strategy=strategy, checks=()) as rt:
            body(rt)
        return bool(rt.reports), list(rt.decisions)
    return attempt


def _failing_schedules(body, strategy, n):
    out = []
    for seed in range(3000):
        with ksync.Runtime(mode="controlled", seed=seed, strategy=strategy, checks=()) as rt:
            body(rt)
        if rt.reports:
            out.append(rt.schedule)
            if len(out) == n:
                return out
    raise AssertionError("no failing schedule found")


def _preemptions(body, schedule):
    g = GuidedStrategy(ksync.decode_schedule(schedule))
    with ksync.Runtime(mode="controlled", strategy=g, checks=()) as rt:
        body(rt)
    return g.preemptions


@pytest.mark.timeout(60)
@pytest.mark.parametrize("body", [lambda rt: lost_update(rt, 3), window_bug],
                         ids=["lost_update", "window_bug"])
def test_minimised_schedule_still_fails_and_is_no_longer(body):
    for schedule in _failing_schedules(body, "random", 3):
        m = minimise(_attempt(body), schedule, max_attempts=80)
        assert m.decisions <= len(ksync.decode_schedule(schedule))
        assert m.preemptions <= m.original_preemptions
        # Strict replay of the shrunk schedule fails again.
        with ksync.Runtime(mode="controlled", schedule=m.schedule, checks=()) as rt:
            body(rt)
        assert rt.reports
        assert _preemptions(body, m.schedule) == m.preemptions


@pytest.mark.parametrize("body", [lambda rt: lost_update(rt, 3), window_bug],
                         ids=["lost_update", "window_bug"])
def test_minimise_removes_needless_preemptions(body):
    shrunk = []
    for schedule in _failing_schedules(body, "random", 4):
        m = minimise(_attempt(body), schedule, max_attempts=120)
        shrunk.append((m.original_preemptions, m.preemptions))
    # Both bugs need exactly one preemption (into the other thread between
    # a read and its write, or into the reader inside the writer's window).
    assert all(after >= 1 for _, after in shrunk), shrunk
    assert sum(after for _, after in shrunk) < sum(before for before, _ in shrunk)
    assert min(after for _, after in shrunk) == 1, shrunk


def test_minimise_returns_a_schedule_that_does_not_fail_unchanged():
    with ksync.Runtime(mode="controlled", seed=0, checks=()) as rt:
        lost_update(rt)
    assert not rt.reports
    m = minimise(_attempt(lost_update), rt.schedule)
    assert m.schedule == rt.schedule and m.attempts == 1
