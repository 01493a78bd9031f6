"""Lockdep and might_sleep annotations of work queues.

The worker holds the queue's and the work's lockdep maps while a work
runs; flush_work, flush_workqueue and cancel_work_sync take and drop them.
So flushing while holding a lock that the work takes is a lock-order cycle
lockdep sees even in a run where the flush happened not to deadlock.
"""

from __future__ import annotations

import pytest

import ksync
import workqueue as wqm
from workqueue import Work

from .helpers import WAITS, cases, kinds, run

LOCKDEP = ("lockdep",)



@pytest.mark.parametrize("how", sorted(WAITS))
@pytest.mark.parametrize("mode,seed", cases())
def test_flush_holding_a_lock_the_work_takes_is_a_cycle_without_deadlocking(mode, seed, how):
    def body(rt):
        lock = ksync.Mutex("kvm->slots_lock")
        wq = wqm.alloc_workqueue("kvm")

        def fn(w):
            with lock:
                pass
        w = Work(fn, name="zap")
        wqm.queue_work(wq, w)
        wqm.flush_work(w)                       # the work has run: no real deadlock below
        with lock:
            WAITS[how](wq, w)
        wqm.destroy_workqueue(wq)
    rt, _ = run(body, mode, seed, checks=LOCKDEP)
    assert kinds(rt) == ["circular-locking-dependency"]
    text = rt.reports[0].text
    assert "kvm->slots_lock" in text
    assert ("(work_completion)zap" in text) or ("(wq_completion)kvm" in text)


@pytest.mark.parametrize("how", sorted(WAITS))
@pytest.mark.parametrize("mode,seed", cases())
def test_flush_without_the_lock_is_silent(mode, seed, how):
    def body(rt):
        lock = ksync.Mutex("kvm->slots_lock")
        wq = wqm.alloc_workqueue("kvm")

        def fn(w):
            with lock:
                pass
        w = Work(fn, name="zap")
        for _ in range(3):
            wqm.queue_work(wq, w)
            WAITS[how](wq, w)
        with lock:
            pass
        wqm.destroy_workqueue(wq)
    rt, _ = run(body, mode, seed, checks=LOCKDEP)
    assert kinds(rt) == []


@pytest.mark.parametrize("mode,seed", cases())
def test_a_work_flushing_its_own_queue_is_reported(mode, seed):
    def body(rt):
        wq = wqm.alloc_workqueue("selfish")
        wqm.queue_work(wq, Work(lambda w: wqm.flush_workqueue(wq), name="flusher"))
        wqm.flush_workqueue(wq)
    rt, _ = run(body, mode, seed, checks=LOCKDEP)
    # lockdep sees the recursion on the queue's map; the run then really deadlocks.
    assert kinds(rt) == ["recursive-locking", "deadlock"]
    assert "(wq_completion)selfish" in rt.reports[0].title


@pytest.mark.parametrize("mode,seed", cases())
def test_flushing_a_sibling_on_an_ordered_queue_is_reported(mode, seed):
    # max_active 1: the sibling can only run after the flusher returns.
    def body(rt):
        wq = wqm.alloc_ordered_workqueue("ordered")
        sibling = Work(lambda w: None, name="sibling")

        def first(w):
            wqm.queue_work(wq, sibling)
            wqm.flush_work(sibling)
        wqm.queue_work(wq, Work(first, name="first"))
        wqm.flush_workqueue(wq)
    rt, _ = run(body, mode, seed, checks=LOCKDEP)
    assert kinds(rt)[0] == "recursive-locking"
    assert "(wq_completion)ordered" in rt.reports[0].title


@pytest.mark.parametrize("mode,seed", cases())
def test_flushing_another_work_on_a_normal_queue_from_a_work_is_silent(mode, seed):
    def body(rt):
        wq = wqm.alloc_workqueue("plain")
        other = Work(lambda w: None, name="other")

        def first(w):
            wqm.queue_work(wq, other)
            wqm.flush_work(other)
        wqm.queue_work(wq, Work(first, name="first"))
        wqm.flush_workqueue(wq)
        wqm.destroy_workqueue(wq)
    rt, _ = run(body, mode, seed, checks=LOCKDEP)
    assert kinds(rt) == []


SLEEPERS = {
    "flush_work": lambda wq, w: wqm.flush_work(w),
    "flush_workqueue": lambda wq, w: wqm.flush_workqueue(wq),
    "cancel_work_sync": lambda wq, w: wqm.cancel_work_sync(w),
    "cancel_delayed_work_sync": lambda wq, w: wqm.cancel_delayed_work_sync(w),
    "flush_delayed_work": lambda wq, w: wqm.flush_delayed_work(w),
    "destroy_workqueue": lambda wq, w: wqm.destroy_workqueue(wq),
}


@pytest.mark.parametrize("how", sorted(SLEEPERS))
@pytest.mark.parametrize("mode,seed", cases())
def test_flush_cancel_sync_and_destroy_might_sleep(mode, seed, how):
    def body(rt):
        spin = ksync.SpinLock("kvm->mmu_lock")
        wq = wqm.alloc_workqueue("q")
        w = wqm.DelayedWork(lambda w: None)
        with spin:                              # idle queue, idle work: nothing to wait for
            SLEEPERS[how](wq, w)
        if not wq.destroyed:
            wqm.destroy_workqueue(wq)
    rt, _ = run(body, mode, seed, checks=("atomic_sleep",))
    assert kinds(rt) == ["sleep-in-atomic"]
    assert "kvm->mmu_lock" in rt.reports[0].text


@pytest.mark.parametrize("mode,seed", cases())
def test_queue_work_is_fine_in_atomic_context(mode, seed):
    def body(rt):
        spin = ksync.SpinLock("kvm->mmu_lock")
        wq = wqm.alloc_workqueue("q")
        w = Work(lambda w: None)
        dw = wqm.DelayedWork(lambda w: None)
        with spin:
            wqm.queue_work(wq, w)
            wqm.cancel_work(w)
            wqm.queue_delayed_work(wq, dw, 60_000)
            wqm.mod_delayed_work(wq, dw, 30_000)
            wqm.cancel_delayed_work(dw)
        wqm.destroy_workqueue(wq)
    rt, _ = run(body, mode, seed, checks=("atomic_sleep", "lockdep"))
    assert kinds(rt) == []


@pytest.mark.parametrize("mode,seed", cases())
def test_a_work_flushing_itself_is_reported(mode, seed):
    def body(rt):
        wq = wqm.alloc_workqueue("q")
        wqm.queue_work(wq, Work(lambda w: wqm.flush_work(w), name="narcissus"))
        wqm.flush_workqueue(wq)
    rt, _ = run(body, mode, seed, checks=LOCKDEP)
    assert kinds(rt) == ["recursive-locking", "deadlock"]
    assert "(work_completion)narcissus" in rt.reports[0].title


@pytest.mark.parametrize("checks", [(), LOCKDEP])
@pytest.mark.parametrize("mode,seed", cases())
def test_the_worker_holds_the_queue_and_work_maps_only_while_the_work_runs(mode, seed, checks):
    def body(rt):
        wq = wqm.alloc_workqueue("q")
        inside = []

        def fn(w):
            inside.append([lk.name for lk, _m in ksync.current_thread().held])
        w = Work(fn, name="probe")
        after = []

        def probe_after(w2):
            after.append([lk.name for lk, _m in ksync.current_thread().held])
        for _ in range(2):
            wqm.queue_work(wq, w)
            wqm.flush_work(w)
        wqm.queue_work(wq, Work(probe_after, name="second"))
        wqm.flush_workqueue(wq)
        wqm.destroy_workqueue(wq)
        return inside, after, [lk.name for lk, _m in ksync.current_thread().held]
    rt, (inside, after, main_held) = run(body, mode, seed, checks=checks)
    assert inside == [["(wq_completion)q", "(work_completion)probe"]] * 2
    assert after == [["(wq_completion)q", "(work_completion)second"]]
    assert main_held == []
    assert kinds(rt) == []
