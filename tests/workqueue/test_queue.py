"""queue_work: the pending bit, requeue while running, non-reentrancy, max_active, ordering."""

from __future__ import annotations

import pytest

import ksync
import workqueue as wqm
from workqueue import Work

from .helpers import cases, kinds, run, until


@pytest.mark.parametrize("mode,seed", cases())
def test_queue_work_returns_false_while_the_work_is_pending(mode, seed):
    def body(rt):
        wqm.set_pool_limits(max_workers=0)      # no worker yet: the work stays pending
        wq = wqm.alloc_workqueue("q")
        runs = []
        w = Work(lambda w: runs.append(1))
        first, second = wqm.queue_work(wq, w), wqm.queue_work(wq, w)
        pending = w.pending
        wqm.set_pool_limits(max_workers=4)      # a raised limit starts the missing worker
        wqm.flush_work(w)
        wqm.destroy_workqueue(wq)
        return first, second, pending, len(runs), w.pending
    rt, res = run(body, mode, seed)
    assert res == (True, False, True, 1, False)
    assert kinds(rt) == []


@pytest.mark.parametrize("mode,seed", cases())
def test_work_queued_while_running_runs_once_more_afterwards(mode, seed):
    def body(rt):
        wq = wqm.alloc_workqueue("q")
        gate = ksync.Completion("gate")
        runs = []

        def fn(w):
            runs.append(ksync.current_thread().name)
            if len(runs) == 1:
                gate.wait()
        w = Work(fn)
        assert wqm.queue_work(wq, w)
        until(lambda: w.running, "the first run")
        again = wqm.queue_work(wq, w)           # PENDING was cleared when the run began
        state = (w.running, w.pending)
        gate.complete()
        wqm.flush_work(w)
        wqm.destroy_workqueue(wq)
        return again, state, len(runs)
    rt, res = run(body, mode, seed)
    assert res == (True, (True, True), 2)
    assert kinds(rt) == []


@pytest.mark.parametrize("mode,seed", cases())
def test_work_never_runs_on_two_workers_at_once(mode, seed):
    def body(rt):
        wqm.set_pool_limits(max_workers=8)
        wq = wqm.alloc_workqueue("q", wqm.WQ_UNBOUND)
        active, peak, runs = [0], [0], [0]

        def fn(w):
            active[0] += 1
            peak[0] = max(peak[0], active[0])
            ksync.msleep(0.2)
            runs[0] += 1
            active[0] -= 1
        w = Work(fn)
        ok = [0] * 4

        def hammer(i):
            for _ in range(15):
                ok[i] += wqm.queue_work(wq, w)
                ksync.msleep(0.05)
        ts = [rt.spawn(hammer, i, name=f"q{i}") for i in range(4)]
        for t in ts:
            t.join()
        wqm.flush_work(w)
        wqm.destroy_workqueue(wq)
        return peak[0], runs[0], sum(ok)
    rt, (peak, runs, queued) = run(body, mode, seed)
    assert peak == 1
    assert runs == queued >= 1       # every successful queueing ran exactly once
    assert kinds(rt) == []


@pytest.mark.parametrize("mode,seed", cases())
def test_max_active_caps_concurrency_and_lets_that_many_run(mode, seed):
    def body(rt):
        wqm.set_pool_limits(max_workers=8)
        wq = wqm.alloc_workqueue("capped", wqm.WQ_UNBOUND, 2)
        active, peak, done = [0], [0], []
        both = ksync.Completion("two running")

        def fn(w):
            active[0] += 1
            peak[0] = max(peak[0], active[0])
            if active[0] == 2:
                both.complete_all()
            both.wait()             # with max_active 1 this would never return
            ksync.msleep(0.1)
            active[0] -= 1
            done.append(w.data)
        for i in range(8):
            wqm.queue_work(wq, Work(fn, data=i))
        wqm.flush_workqueue(wq)
        wqm.destroy_workqueue(wq)
        return peak[0], sorted(done)
    rt, (peak, done) = run(body, mode, seed)
    assert peak == 2
    assert done == list(range(8))
    assert kinds(rt) == []


@pytest.mark.parametrize("mode,seed", cases())
def test_ordered_queue_runs_one_at_a_time_in_queueing_order(mode, seed):
    def body(rt):
        wqm.set_pool_limits(max_workers=8)
        wq = wqm.alloc_ordered_workqueue("ordered-%d", 0, 7)
        active, peak, order = [0], [0], []

        def fn(w):
            active[0] += 1
            peak[0] = max(peak[0], active[0])
            ksync.msleep(0.1 * (w.data % 3))
            order.append(w.data)
            active[0] -= 1
        works = [Work(fn, data=i) for i in range(12)]

        def queuer(lo):
            for w in works[lo:lo + 6]:
                wqm.queue_work(wq, w)
        rt.spawn(queuer, 0).join()
        rt.spawn(queuer, 6).join()
        wqm.flush_workqueue(wq)
        name, max_active = wq.name, wq.max_active
        wqm.destroy_workqueue(wq)
        return name, max_active, peak[0], order
    rt, (name, max_active, peak, order) = run(body, mode, seed)
    assert (name, max_active, peak) == ("ordered-7", 1, 1)
    assert order == list(range(12))
    assert kinds(rt) == []


@pytest.mark.parametrize("mode,seed", cases())
def test_system_queues_and_python_style_methods_run_works(mode, seed):
    def body(rt):
        ran = []
        w1 = Work(lambda w: ran.append("system_wq"))
        w2 = Work(lambda w: ran.append("unbound"))
        assert w1.queue()                       # defaults to system_wq
        assert wqm.queue_work(wqm.system_unbound_wq, w2)
        w1.flush()
        w2.flush()
        with wqm.alloc_workqueue("ctx") as wq:
            w3 = Work(lambda w: ran.append(w.data), data="ctx")
            assert wq.queue(w3)
            wq.flush()
        return sorted(ran), wq.destroyed, repr(w1)
    rt, (ran, destroyed, r) = run(body, mode, seed)
    assert ran == ["ctx", "system_wq", "unbound"]
    assert destroyed
    assert "idle" in r
    assert kinds(rt) == []


def test_bad_arguments_raise_clear_errors_naming_the_object():
    def body(rt):
        wq = wqm.alloc_workqueue("q")
        errors = []
        for call in (lambda: wqm.alloc_workqueue(""),
                     lambda: wqm.alloc_workqueue("x", 1 << 30),
                     lambda: wqm.alloc_workqueue("x", 0, -1),
                     lambda: Work("not callable"),
                     lambda: wqm.queue_work(wq, "not a work"),
                     lambda: wqm.queue_work("not a queue", Work(print)),
                     lambda: wqm.flush_work(None),
                     lambda: wqm.set_pool_limits(max_workers=-1),
                     lambda: wqm.set_pool_limits(idle_timeout_ms="soon"),
                     lambda: wqm.destroy_workqueue(wqm.system_wq)):
            with pytest.raises(wqm.WorkqueueError) as ei:
                call()
            errors.append(str(ei.value))
        wqm.destroy_workqueue(wq)
        return errors
    rt, errors = run(body, "controlled", 0)
    assert "name" in errors[0]
    assert "unknown flag" in errors[1]
    assert "max_active" in errors[2]
    assert "callable" in errors[3]
    assert "not a workqueue.Work" in errors[4] and "test_queue.py" in errors[4]
    assert "not a work queue" in errors[5]
    assert "flush_work" in errors[6]
    assert "max_workers" in errors[7]
    assert "idle_timeout_ms" in errors[8]
    assert "events" in errors[9]


def test_max_active_above_the_kernel_limit_is_clamped_with_a_warning():
    def body(rt):
        wq = wqm.alloc_workqueue("big", 0, 4096)
        ma = wq.max_active
        wqm.destroy_workqueue(wq)
        return ma
    rt, ma = run(body, "controlled", 0)
    assert ma == wqm.WQ_MAX_ACTIVE
    assert kinds(rt) == ["warn"] and "clamping" in rt.reports[0].text
