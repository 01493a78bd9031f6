"""flush_work, flush_workqueue, drain_workqueue: what each waits for, and what it does not."""

from __future__ import annotations

import pytest

import ksync
import workqueue as wqm
from workqueue import Work

from .helpers import blocked_in, cases, kinds, run, until


@pytest.mark.parametrize("mode,seed", cases())
def test_flush_work_waits_for_the_last_queueing_and_is_false_when_idle(mode, seed):
    def body(rt):
        wq = wqm.alloc_workqueue("q")
        gate = ksync.Completion("gate")
        done = []

        def fn(w):
            gate.wait()
            done.append(1)
        w = Work(fn)
        idle = wqm.flush_work(w)
        wqm.queue_work(wq, w)
        me = ksync.current_thread()

        def opener():
            until(blocked_in(me, "flush_work"), "main to wait in flush_work")
            gate.complete()
        o = rt.spawn(opener, name="opener")
        waited = wqm.flush_work(w)              # the run cannot end before this waits
        seen = len(done)
        o.join()
        wqm.destroy_workqueue(wq)
        return idle, waited, seen
    rt, res = run(body, mode, seed)
    assert res == (False, True, 1)
    assert kinds(rt) == []


@pytest.mark.parametrize("mode,seed", cases())
def test_flush_work_does_not_wait_for_a_queueing_made_after_it_began(mode, seed):
    def body(rt):
        wq = wqm.alloc_workqueue("q")
        gates = [ksync.Completion("run 1"), ksync.Completion("run 2")]
        runs = []

        def fn(w):
            runs.append(1)
            gates[len(runs) - 1].wait()
        w = Work(fn)
        wqm.queue_work(wq, w)
        until(lambda: w.running, "run 1 to start")
        f = rt.spawn(wqm.flush_work, w, name="flusher")
        until(blocked_in(f, "flush_work"), "the flush to wait")
        assert wqm.queue_work(wq, w)            # queued after the flush began
        gates[0].complete()
        waited = f.join()                       # would deadlock if it waited for run 2
        gates[1].complete()
        wqm.flush_work(w)
        wqm.destroy_workqueue(wq)
        return waited, len(runs)
    rt, res = run(body, mode, seed)
    assert res == (True, 2)
    assert kinds(rt) == []


@pytest.mark.parametrize("mode,seed", cases())
def test_flush_workqueue_waits_for_every_work_queued_before_it(mode, seed):
    def body(rt):
        wqm.set_pool_limits(max_workers=4)
        wq = wqm.alloc_workqueue("q", wqm.WQ_UNBOUND, 3)   # some wait on the inactive list
        done = []

        def fn(w):
            ksync.msleep(0.1 * (w.data % 4))
            done.append(w.data)
        for i in range(20):
            wqm.queue_work(wq, Work(fn, data=i))
        wqm.flush_workqueue(wq)
        seen = sorted(done)
        wqm.destroy_workqueue(wq)
        return seen
    rt, seen = run(body, mode, seed)
    assert seen == list(range(20))
    assert kinds(rt) == []


@pytest.mark.parametrize("mode,seed", cases())
def test_flush_workqueue_does_not_wait_for_works_queued_after_it_began(mode, seed):
    def body(rt):
        wq = wqm.alloc_workqueue("q")
        a_gate, b_gate = ksync.Completion("a"), ksync.Completion("b")
        a = Work(lambda w: a_gate.wait(), name="a")
        b = Work(lambda w: b_gate.wait(), name="b")
        wqm.queue_work(wq, a)
        f = rt.spawn(wqm.flush_workqueue, wq, name="flusher")
        until(blocked_in(f, "flush_workqueue"), "the flush to wait")
        wqm.queue_work(wq, b)                   # after the flush began: not its business
        a_gate.complete()
        f.join()                                # would deadlock if it waited for b
        b_running_or_pending = b.running or b.pending
        b_gate.complete()
        wqm.destroy_workqueue(wq)
        return b_running_or_pending
    rt, b_busy = run(body, mode, seed)
    assert b_busy
    assert kinds(rt) == []


@pytest.mark.parametrize("mode,seed", cases())
def test_drain_waits_until_empty_even_when_works_requeue_themselves(mode, seed):
    def body(rt):
        wq = wqm.alloc_workqueue("q")
        runs = []

        def fn(w):
            runs.append(1)
            if len(runs) < 25:
                assert wqm.queue_work(wq, w)    # chained: allowed while draining
        wqm.queue_work(wq, Work(fn))
        wqm.drain_workqueue(wq)
        n = len(runs)
        wqm.destroy_workqueue(wq)
        return n
    rt, n = run(body, mode, seed)
    assert n == 25
    # Each flush round covers one or two runs, so the drain may whine (as the
    # kernel does after 10 rounds) depending on the interleaving; nothing else.
    assert all("isn't complete after" in r.title for r in rt.reports)


@pytest.mark.parametrize("mode,seed", cases())
def test_drain_refuses_queueing_from_outside_with_a_report(mode, seed):
    def body(rt):
        wq = wqm.alloc_workqueue("q")
        gate = ksync.Completion("gate")
        wqm.queue_work(wq, Work(lambda w: gate.wait(), name="blocker"))
        d = rt.spawn(wqm.drain_workqueue, wq, name="drainer")
        until(blocked_in(d, "flush_workqueue"), "the drain to wait")
        ran = []
        outsider = Work(lambda w: ran.append(1), name="outsider")
        refused = wqm.queue_work(wq, outsider)
        gate.complete()
        d.join()
        after = wqm.queue_work(wq, outsider)    # drain over: accepted again
        wqm.flush_workqueue(wq)
        wqm.destroy_workqueue(wq)
        return refused, after, len(ran)
    rt, res = run(body, mode, seed)
    assert res == (False, True, 1)
    assert kinds(rt) == ["warn"]
    text = rt.reports[0].text
    assert "draining" in text and "outsider" in text and "test_flush.py" in text


@pytest.mark.parametrize("mode,seed", cases())
def test_drain_of_a_work_that_requeues_forever_is_reported_after_ten_rounds(mode, seed):
    def body(rt):
        wq = wqm.alloc_workqueue("spinner")
        stop = []

        def fn(w):
            ksync.msleep(0.05)
            if not stop:
                wqm.queue_work(wq, w)
        wqm.queue_work(wq, Work(fn))
        d = rt.spawn(wqm.drain_workqueue, wq, name="drainer")
        until(lambda: rt.reports, "the drain warning")
        stop.append(1)
        d.join()
        wqm.destroy_workqueue(wq)
    rt, _ = run(body, mode, seed)
    assert kinds(rt) == ["warn"]
    assert rt.reports[0].title == "drain_workqueue: spinner isn't complete after 10 tries"
