"""cancel_work / cancel_work_sync: remove a pending queueing, wait for a running one."""

from __future__ import annotations

import pytest

import ksync
import workqueue as wqm
from workqueue import Work

from .helpers import blocked_in, cases, kinds, run, until


@pytest.mark.parametrize("mode,seed", cases())
def test_cancel_work_sync_removes_a_pending_work_so_it_never_runs(mode, seed):
    def body(rt):
        wqm.set_pool_limits(max_workers=0)      # keep it pending
        wq = wqm.alloc_workqueue("q")
        runs = []
        w = Work(lambda w: runs.append(1))
        wqm.queue_work(wq, w)
        was = wqm.cancel_work_sync(w)
        after = (w.pending, w.running)
        wqm.set_pool_limits(max_workers=4)
        wqm.flush_workqueue(wq)                 # returns: the cancelled queueing is retired
        again = wqm.cancel_work_sync(w)
        wqm.destroy_workqueue(wq)
        return was, after, len(runs), again
    rt, res = run(body, mode, seed)
    assert res == (True, (False, False), 0, False)
    assert kinds(rt) == []


@pytest.mark.parametrize("mode,seed", cases())
def test_cancel_removes_a_work_waiting_behind_max_active(mode, seed):
    def body(rt):
        wq = wqm.alloc_workqueue("one", 0, 1)
        gate = ksync.Completion("gate")
        ran = []
        a = Work(lambda w: gate.wait(), name="a")
        b = Work(lambda w: ran.append("b"), name="b")
        c = Work(lambda w: ran.append("c"), name="c")
        for w in (a, b, c):
            wqm.queue_work(wq, w)
        until(lambda: a.running, "a to run")
        was = wqm.cancel_work(b)                # on the inactive list
        gate.complete()
        wqm.flush_workqueue(wq)
        wqm.destroy_workqueue(wq)
        return was, ran
    rt, res = run(body, mode, seed)
    assert res == (True, ["c"])
    assert kinds(rt) == []


@pytest.mark.parametrize("mode,seed", cases())
def test_cancel_work_sync_waits_for_a_running_instance_and_refuses_requeue(mode, seed):
    def body(rt):
        wq = wqm.alloc_workqueue("q")
        gate = ksync.Completion("gate")
        finished = []

        def fn(w):
            gate.wait()
            finished.append(1)
        w = Work(fn)
        wqm.queue_work(wq, w)
        until(lambda: w.running, "the run")

        def canceller():
            was = wqm.cancel_work_sync(w)
            return was, len(finished), w.running, w.pending
        c = rt.spawn(canceller, name="canceller")
        until(blocked_in(c, "cancel_work_sync"), "the cancel to wait")
        requeued = wqm.queue_work(wq, w)        # refused while a cancel is in progress
        gate.complete()
        res = c.join()
        wqm.flush_workqueue(wq)
        wqm.destroy_workqueue(wq)
        return res, requeued, len(finished)
    rt, res = run(body, mode, seed)
    assert res == ((False, 1, False, False), False, 1)
    assert kinds(rt) == []


@pytest.mark.parametrize("mode,seed", cases())
def test_cancel_work_sync_stops_a_self_requeueing_work(mode, seed):
    def body(rt):
        wq = wqm.alloc_workqueue("q")
        runs = []

        def fn(w):
            runs.append(1)
            ksync.msleep(0.05)
            wqm.queue_work(wq, w)               # forever, until cancelled
        w = Work(fn)
        wqm.queue_work(wq, w)
        until(lambda: len(runs) >= 3, "a few runs")
        wqm.cancel_work_sync(w)
        state = (w.pending, w.running)
        n = len(runs)
        ksync.msleep(1)
        wqm.destroy_workqueue(wq)
        return state, len(runs) == n
    rt, res = run(body, mode, seed)
    assert res == ((False, False), True)
    assert kinds(rt) == []


@pytest.mark.parametrize("mode,seed", cases())
def test_cancel_work_does_not_wait_for_a_running_instance(mode, seed):
    def body(rt):
        wq = wqm.alloc_workqueue("q")
        gate = ksync.Completion("gate")
        w = Work(lambda w: gate.wait())
        wqm.queue_work(wq, w)
        until(lambda: w.running, "the run")
        was = wqm.cancel_work(w)                # not pending: nothing to remove
        still = w.running
        gate.complete()
        wqm.destroy_workqueue(wq)
        return was, still
    rt, res = run(body, mode, seed)
    assert res == (False, True)
    assert kinds(rt) == []
