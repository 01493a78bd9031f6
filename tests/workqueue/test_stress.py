"""Stress: 10,000 works over 8 workers with flushes, cancels and requeues interleaved.

Every work must run exactly as many times as the semantics say: once per
successful queueing (queue_work returned True, including a work requeueing
itself while it runs), minus one per successful cancel (cancel_work or
cancel_work_sync returned True, which means it took one pending queueing
away).  No run may overlap another run of the same work.  Per-work counts
are kept per thread (drivers) or by the work's own runs (which are
serialised), so the bookkeeping itself needs no lock.
"""

from __future__ import annotations

import random

import pytest

import ksync
import workqueue as wqm
from workqueue import Work

from .helpers import kinds, run

N_WORKS = 10_000
N_WORKERS = 8
N_DRIVERS = 4


def _stress(rt: ksync.Runtime, seed: int) -> dict:
    wqm.set_pool_limits(max_workers=N_WORKERS)
    wide = wqm.alloc_workqueue("stress", wqm.WQ_UNBOUND, 0)
    narrow = wqm.alloc_workqueue("stress-narrow", wqm.WQ_UNBOUND, 3)   # inactive list in play
    queues = (wide, narrow)
    runs = [0] * N_WORKS
    running = [False] * N_WORKS
    self_queued = [0] * N_WORKS
    overlaps = []

    def fn(w):
        i = w.data
        if running[i]:
            overlaps.append(i)
        running[i] = True
        runs[i] += 1
        if i % 3 == 0:
            ksync.cond_resched()                   # a scheduling point inside the run
        if i % 10 == 0 and runs[i] == 1:          # a tenth requeue themselves once
            self_queued[i] += wqm.queue_work(queues[i % 2], w)
        running[i] = False

    works = [Work(fn, name=f"w{i % 50}", data=i) for i in range(N_WORKS)]
    queued = [[0] * N_WORKS for _ in range(N_DRIVERS)]
    cancelled = [[0] * N_WORKS for _ in range(N_DRIVERS)]

    def driver(d: int) -> None:
        rng = random.Random(seed * 1000 + d)
        q, c = queued[d], cancelled[d]
        for step, i in enumerate(range(d, N_WORKS, N_DRIVERS)):
            q[i] += wqm.queue_work(queues[i % 2], works[i])
            r = rng.random()
            if r < 0.05:
                c[i] += wqm.cancel_work(works[i])        # right after queueing: often pending
            elif r < 0.08:
                c[i] += wqm.cancel_work_sync(works[i])
            elif r < 0.25:
                j = rng.randrange(N_WORKS)
                if r < 0.15:
                    q[j] += wqm.queue_work(queues[j % 2], works[j])    # requeue, maybe pending
                elif r < 0.19:
                    c[j] += wqm.cancel_work(works[j])
                elif r < 0.21:
                    c[j] += wqm.cancel_work_sync(works[j])
                else:
                    wqm.flush_work(works[j])
            if step % 500 == 499:
                wqm.flush_workqueue(queues[step // 500 % 2])

    ts = [rt.spawn(driver, d, name=f"driver{d}") for d in range(N_DRIVERS)]
    for t in ts:
        t.join()
    for wq in queues:
        wqm.drain_workqueue(wq)
    peak = wide.pool.peak_workers
    for wq in queues:
        wqm.destroy_workqueue(wq)
    expected = [sum(queued[d][i] for d in range(N_DRIVERS)) + self_queued[i]
                - sum(cancelled[d][i] for d in range(N_DRIVERS)) for i in range(N_WORKS)]
    return {"runs": runs, "expected": expected, "overlaps": overlaps, "peak": peak,
            "cancelled": sum(map(sum, cancelled)), "self": sum(self_queued),
            "pending": [w for w in works if w.pending or w.running]}


def _check(rt: ksync.Runtime, res: dict) -> None:
    assert kinds(rt) == []
    assert res["overlaps"] == []
    assert res["pending"] == []
    bad = [(i, r, e) for i, (r, e) in enumerate(zip(res["runs"], res["expected"], strict=True))
           if r != e]
    assert bad == [], f"{len(bad)} works ran the wrong number of times, e.g. {bad[:5]}"
    assert sum(res["runs"]) >= N_WORKS - res["cancelled"]
    assert res["cancelled"] > 0 and res["self"] > 0      # the mix really happened
    assert res["peak"] <= N_WORKERS


@pytest.mark.timeout(60)
@pytest.mark.parametrize("seed", range(2))
def test_stress_free_every_work_runs_as_often_as_queued_minus_cancelled(seed):
    rt, res = run(lambda rt: _stress(rt, seed), "free", seed, max_steps=None)
    _check(rt, res)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("seed", range(4))
def test_stress_controlled_every_work_runs_as_often_as_queued_minus_cancelled(seed):
    rt, res = run(lambda rt: _stress(rt, seed), "controlled", seed, max_steps=None)
    _check(rt, res)
