"""Happens-before edges for the race detector: queue_work -> the run, the run's end -> flush.

Kernel counterpart: the ordering the pool lock and the PENDING bit give
(what KCSAN relies on): writes before queue_work are visible to the work,
and the work's writes are visible after flush_work/flush_workqueue/
cancel_work_sync return.  Without a flush, reading what a work wrote is a
data race even when the work happened to finish first.
"""

from __future__ import annotations

import pytest

import ksync
import workqueue as wqm
from workqueue import Work

from .helpers import WAITS, cases, kinds, run, until

RACES = ("races",)



@pytest.mark.parametrize("how", sorted(WAITS))
@pytest.mark.parametrize("mode,seed", cases())
def test_writes_before_queue_and_in_the_work_are_ordered_by_queue_and_flush(mode, seed, how):
    def body(rt):
        wq = wqm.alloc_workqueue("q")
        arg, result = ksync.Shared("arg", 0), ksync.Shared("result", 0)

        def fn(w):
            result.write(arg.read() + 1)
        w = Work(fn)
        for i in range(3):
            arg.write(i)
            wqm.queue_work(wq, w)
            WAITS[how](wq, w)
            result.read()
        wqm.destroy_workqueue(wq)
    rt, _ = run(body, mode, seed, checks=RACES)
    assert kinds(rt) == []


@pytest.mark.parametrize("mode,seed", cases())
def test_flush_of_a_work_that_already_finished_still_orders(mode, seed):
    def body(rt):
        wq = wqm.alloc_workqueue("q")
        result = ksync.Shared("result", 0)
        finished = []

        def fn(w):
            result.write(1)
            finished.append(1)
        w = Work(fn)
        wqm.queue_work(wq, w)
        until(lambda: finished and not w.running, "the work to end")
        idle = wqm.flush_work(w)                # nothing to wait for, still an acquire
        result.read()
        wqm.destroy_workqueue(wq)
        return idle
    rt, idle = run(body, mode, seed, checks=RACES)
    assert idle is False
    assert kinds(rt) == []


@pytest.mark.parametrize("mode,seed", cases())
def test_consecutive_runs_of_a_work_are_ordered(mode, seed):
    # A work's runs never overlap, so its private state needs no lock.
    def body(rt):
        wqm.set_pool_limits(max_workers=4)
        wq = wqm.alloc_workqueue("q", wqm.WQ_UNBOUND)
        private = ksync.Shared("private", 0)
        w = Work(lambda w: private.write(private.read() + 1))

        def queuer():
            for _ in range(10):
                wqm.queue_work(wq, w)
                ksync.msleep(0.05)
        ts = [rt.spawn(queuer, name=f"q{i}") for i in range(3)]
        for t in ts:
            t.join()
        wqm.flush_workqueue(wq)
        wqm.destroy_workqueue(wq)
    rt, _ = run(body, mode, seed, checks=RACES)
    assert kinds(rt) == []


@pytest.mark.parametrize("mode,seed", cases())
def test_reading_a_works_result_without_a_flush_is_a_data_race(mode, seed):
    def body(rt):
        wq = wqm.alloc_workqueue("q")
        result = ksync.Shared("result", 0)
        finished = []

        def fn(w):
            result.write(1)
            finished.append(1)                  # plain Python: no happens-before
        wqm.queue_work(wq, Work(fn))
        until(lambda: finished, "the work to write")
        result.read()                           # no flush: races with the work's write
        wqm.destroy_workqueue(wq)
    rt, _ = run(body, mode, seed, checks=RACES)
    assert kinds(rt) == ["data-race"]
    assert "result" in rt.reports[0].text


@pytest.mark.parametrize("mode,seed", cases())
def test_a_flush_does_not_order_a_queueing_made_after_it_began(mode, seed):
    # `late` writes x and queues the work while the flush already waits; the
    # flush returning says nothing about `late`'s write.
    def body(rt):
        wq = wqm.alloc_workqueue("q")
        x = ksync.Shared("x", 0)
        gates = [ksync.Completion("run 1"), ksync.Completion("run 2")]
        runs = []

        def fn(w):
            runs.append(1)
            gates[len(runs) - 1].wait()         # run 2 ends only after the read below
        w = Work(fn)
        wqm.queue_work(wq, w)
        until(lambda: w.running, "run 1")
        queued = []

        def late():
            x.write(1)
            queued.append(wqm.queue_work(wq, w))

        def flusher():
            wqm.flush_work(w)
            until(lambda: queued, "the late queueing")
            x.read()                            # races with late's write
        f = rt.spawn(flusher, name="flusher")
        until(lambda: f.blocked_on is not None and f.wait_desc.startswith("flush_work"),
              "the flush to wait")
        lt = rt.spawn(late, name="late")
        until(lambda: queued, "the late queueing")
        gates[0].complete()
        f.join()
        lt.join()
        gates[1].complete()
        wqm.flush_work(w)
        wqm.destroy_workqueue(wq)
    rt, _ = run(body, mode, seed, checks=RACES)
    assert kinds(rt) == ["data-race"]
    assert "ksync.Shared 'x'" in rt.reports[0].text


@pytest.mark.parametrize("mode,seed", cases())
def test_a_correct_program_is_silent_under_every_checker(mode, seed):
    # A VM-teardown-like pattern: works take a spinlock and update shared
    # state; a delayed work re-arms itself; the owner flushes, cancels and
    # destroys in the right order, holding no lock while it waits.
    def body(rt):
        wq = wqm.alloc_workqueue("kvm", wqm.WQ_UNBOUND | wqm.WQ_MEM_RECLAIM)
        mmu_lock = ksync.SpinLock("kvm->mmu_lock")
        slots_lock = ksync.Mutex("kvm->slots_lock")
        zapped = ksync.Shared("zapped", 0)
        ticks = ksync.Shared("ticks", 0)

        def zap(w):
            with mmu_lock:
                zapped.write(zapped.read() + 1)

        def tick(dw):
            ticks.write(ticks.read() + 1)
            if ticks.read() < 3:
                wqm.queue_delayed_work(wq, dw, 1)
        works = [Work(zap, name="zap") for _ in range(6)]
        dw = wqm.DelayedWork(tick, name="tick")

        def vcpu(lo):
            for w in works[lo:lo + 3]:
                with mmu_lock:
                    wqm.queue_work(wq, w)
        ts = [rt.spawn(vcpu, lo, name=f"vcpu{lo // 3}") for lo in (0, 3)]
        wqm.queue_delayed_work(wq, dw, 1)
        for t in ts:
            t.join()
        with slots_lock:
            pass
        wqm.flush_workqueue(wq)
        wqm.cancel_delayed_work_sync(dw)
        wqm.destroy_workqueue(wq)
        with mmu_lock:
            return zapped.read()
    rt, n = run(body, mode, seed, checks=None)
    assert n == 6
    assert kinds(rt) == []
