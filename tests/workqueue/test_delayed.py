"""Delayed works: queue_delayed_work, mod_delayed_work, cancel and flush of an armed timer.

Delays are virtual in controlled mode (a run with a one-hour timer takes no
real time) and real in free mode, so the free runs use short delays and
only lower bounds.
"""

from __future__ import annotations

import pytest

import ksync
import workqueue as wqm
from workqueue import DelayedWork

from .helpers import blocked_in, cases, kinds, run, until

MS = 1_000_000


@pytest.mark.parametrize("mode,seed", cases())
def test_queue_delayed_work_runs_once_after_the_delay(mode, seed):
    def body(rt):
        wq = wqm.alloc_workqueue("q")
        fired = ksync.Completion("fired")
        at = []

        def fn(w):
            at.append(rt.now_ns())
            fired.complete()
        dw = DelayedWork(fn)
        t0 = rt.now_ns()
        queued = wqm.queue_delayed_work(wq, dw, 20)
        fired.wait()
        wqm.flush_work(dw)
        ksync.msleep(1)
        wqm.destroy_workqueue(wq)
        return queued, len(at), at[0] - t0
    rt, (queued, n, elapsed) = run(body, mode, seed)
    assert (queued, n) == (True, 1)
    assert elapsed >= 20 * MS
    if mode == "controlled":
        assert elapsed < 21 * MS        # virtual time: the timer fires on time
    assert kinds(rt) == []


@pytest.mark.parametrize("mode,seed", cases())
def test_queue_delayed_work_returns_false_while_armed(mode, seed):
    def body(rt):
        wq = wqm.alloc_workqueue("q")
        ran = []
        dw = DelayedWork(lambda w: ran.append(1))
        first = wqm.queue_delayed_work(wq, dw, 3_600_000)
        second = wqm.queue_delayed_work(wq, dw, 1)
        plain = wqm.queue_work(wq, dw)          # armed counts as pending for queue_work too
        state = (dw.pending, dw.timer_pending)
        wqm.cancel_delayed_work_sync(dw)
        wqm.destroy_workqueue(wq)
        return first, second, plain, state, len(ran)
    rt, res = run(body, mode, seed)
    assert res == (True, False, False, (True, True), 0)
    assert kinds(rt) == []


@pytest.mark.parametrize("mode,seed", cases())
def test_zero_delay_queues_at_once(mode, seed):
    def body(rt):
        wq = wqm.alloc_workqueue("q")
        ran = []
        dw = DelayedWork(lambda w: ran.append(1))
        wqm.queue_delayed_work(wq, dw, 0)
        armed = dw.timer_pending
        wqm.flush_work(dw)
        wqm.destroy_workqueue(wq)
        return armed, len(ran)
    rt, res = run(body, mode, seed)
    assert res == (False, 1)


@pytest.mark.parametrize("mode,seed", cases())
def test_mod_delayed_work_rearms_an_armed_timer(mode, seed):
    def body(rt):
        wq = wqm.alloc_workqueue("q")
        fired = ksync.Completion("fired")
        at = []

        def fn(w):
            at.append(rt.now_ns())
            fired.complete()
        dw = DelayedWork(fn)
        idle = wqm.mod_delayed_work(wq, dw, 3_600_000)  # idle -> armed for an hour
        t0 = rt.now_ns()
        was = wqm.mod_delayed_work(wq, dw, 5)           # armed -> 5 ms from now
        fired.wait()
        wqm.flush_work(dw)
        armed = dw.timer_pending
        wqm.destroy_workqueue(wq)
        return idle, was, len(at), armed, at[0] - t0
    rt, (idle, was, n, armed, elapsed) = run(body, mode, seed)
    assert (idle, was, n, armed) == (False, True, 1, False)
    assert elapsed >= 5 * MS
    if mode == "controlled":
        assert elapsed < 6 * MS
    assert kinds(rt) == []


@pytest.mark.parametrize("mode,seed", cases())
def test_cancel_delayed_work_sync_disarms_the_timer(mode, seed):
    def body(rt):
        wq = wqm.alloc_workqueue("q")
        ran = []
        dw = DelayedWork(lambda w: ran.append(1))
        wqm.queue_delayed_work(wq, dw, 60_000)
        was = wqm.cancel_delayed_work_sync(dw)
        state = (dw.pending, dw.timer_pending)
        if mode == "controlled":
            ksync.msleep(60_001)                        # past the old deadline, virtually
        fired = wqm.flush_delayed_work(dw)              # would fire a timer still armed
        again = wqm.cancel_delayed_work(dw)
        wqm.destroy_workqueue(wq)
        return was, state, fired, len(ran), again
    rt, res = run(body, mode, seed)
    assert res == (True, (False, False), False, 0, False)
    assert kinds(rt) == []


@pytest.mark.parametrize("mode,seed", cases())
def test_flush_delayed_work_fires_an_armed_timer_now(mode, seed):
    def body(rt):
        wq = wqm.alloc_workqueue("q")
        ran = []
        dw = DelayedWork(lambda w: ran.append(1))
        wqm.queue_delayed_work(wq, dw, 3_600_000)       # an hour
        plain = wqm.flush_work(dw)                      # armed, not queued: nothing to wait for
        t0 = rt.now_ns()
        dw.flush()
        took = rt.now_ns() - t0
        n = len(ran)                                    # ran by the time flush returned
        wqm.destroy_workqueue(wq)
        return plain, n, took
    rt, (plain, n, took) = run(body, mode, seed)
    assert (plain, n) == (False, 1)
    if mode == "controlled":
        assert took < 1000 * MS
    assert kinds(rt) == []


@pytest.mark.parametrize("seed", range(5))
def test_timer_firing_on_a_destroyed_queue_is_reported(seed):
    # Controlled mode only: in free mode the timer may beat destroy_workqueue.
    def body(rt):
        wq = wqm.alloc_workqueue("gone")
        ran = []
        dw = DelayedWork(lambda w: ran.append(1), name="late")
        wqm.queue_delayed_work(wq, dw, 2)
        wqm.destroy_workqueue(wq)       # does not cancel timers, as in the kernel
        ksync.msleep(5)
        return len(ran), dw.pending
    rt, res = run(body, "controlled", seed)
    assert res == (0, False)
    assert kinds(rt) == ["warn"]
    assert "late queued on destroyed workqueue gone" in rt.reports[0].title


@pytest.mark.parametrize("mode,seed", cases())
def test_flushing_a_delayed_work_armed_for_a_destroyed_queue_is_reported(mode, seed):
    def body(rt):
        wq = wqm.alloc_workqueue("gone")
        ran = []
        dw = DelayedWork(lambda w: ran.append(1), name="late")
        wqm.queue_delayed_work(wq, dw, 3_600_000)
        wqm.destroy_workqueue(wq)
        waited = wqm.flush_delayed_work(dw)     # fires the timer now: refused
        return waited, len(ran), dw.pending
    rt, res = run(body, mode, seed)
    assert res == (False, 0, False)
    assert kinds(rt) == ["warn"]
    assert "late queued on destroyed workqueue gone" in rt.reports[0].title
    assert "test_delayed.py" in rt.reports[0].text


def test_bad_delay_is_an_error_naming_the_work():
    def body(rt):
        dw = DelayedWork(print, name="dw")
        with pytest.raises(wqm.WorkqueueError, match="dw, delay_ms=-1"):
            wqm.queue_delayed_work(wqm.system_wq, dw, -1)
        with pytest.raises(wqm.WorkqueueError, match="not a workqueue.DelayedWork"):
            wqm.queue_delayed_work(wqm.system_wq, wqm.Work(print), 1)
    run(body, "controlled", 0)


@pytest.mark.parametrize("seed", range(5))
def test_trace_shows_each_delayed_queueing_before_the_run_it_causes(seed):
    # Controlled mode: a trace is exact there (free-mode traces are approximate).
    def body(rt):
        wq = wqm.alloc_workqueue("q")
        dw = DelayedWork(lambda w: None, name="dw")
        wqm.queue_delayed_work(wq, dw, 0)           # queued at once
        wqm.flush_work(dw)
        wqm.queue_delayed_work(wq, dw, 1)           # queued by the timer
        ksync.msleep(3)
        wqm.mod_delayed_work(wq, dw, 0)
        wqm.flush_work(dw)
        wqm.destroy_workqueue(wq)
    rt, _ = run(body, "controlled", seed, trace=True)
    seq = [arg.split(",")[0] for _s, _t, kind, _o, arg in rt.tracer.events if kind == "custom"]
    causes = ("queue_work", "mod_delayed_work")
    firsts = [s for s in seq if s in causes or s == "queue_delayed_work" or s == "work_start"]
    # queue_delayed_work(0) -> start; queue_delayed_work(1) -> timer's queue_work -> start;
    # mod_delayed_work(0) -> start
    assert firsts == ["queue_delayed_work", "work_start", "queue_delayed_work", "queue_work",
                      "work_start", "mod_delayed_work", "work_start"]


@pytest.mark.parametrize("mode,seed", cases())
def test_flush_delayed_work_into_a_draining_queue_is_refused(mode, seed):
    def body(rt):
        wq = wqm.alloc_workqueue("q")
        gate = ksync.Completion("gate")
        ran = []
        dw = DelayedWork(lambda w: ran.append(1), name="armed")
        wqm.queue_delayed_work(wq, dw, 3_600_000)
        wqm.queue_work(wq, wqm.Work(lambda w: gate.wait(), name="blocker"))
        d = rt.spawn(wqm.drain_workqueue, wq, name="drainer")
        until(blocked_in(d, "flush_workqueue"), "the drain to wait")
        waited = wqm.flush_delayed_work(dw)     # fires the timer now: not chained work
        gate.complete()
        d.join()
        wqm.destroy_workqueue(wq)
        return waited, len(ran), dw.pending
    rt, res = run(body, mode, seed)
    assert res == (False, 0, False)
    assert kinds(rt) == ["warn"]
    assert "armed queued on draining workqueue q" in rt.reports[0].title
