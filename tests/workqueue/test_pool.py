"""The worker pool: kworker names, workers on demand up to a limit, idling out, rescuers,
exceptions in works, destroy."""

from __future__ import annotations

import re
import sys

import pytest

import ksync
import workqueue as wqm
from workqueue import Work

from .helpers import cases, kinds, run, until


@pytest.mark.parametrize("mode,seed", cases())
def test_workers_are_named_like_kworkers(mode, seed):
    def body(rt):
        names = {}
        queues = {"bound": wqm.alloc_workqueue("b"),
                  "unbound": wqm.alloc_workqueue("u", wqm.WQ_UNBOUND),
                  "highpri": wqm.alloc_workqueue("h", wqm.WQ_HIGHPRI)}
        for kind, wq in queues.items():
            w = Work(lambda w: names.__setitem__(w.data, ksync.current_thread().name), data=kind)
            wqm.queue_work(wq, w)
            wqm.flush_work(w)
            wqm.destroy_workqueue(wq)
        return names
    rt, names = run(body, mode, seed)
    assert re.fullmatch(r"kworker/0:\d+", names["bound"])
    assert re.fullmatch(r"kworker/u\d+:\d+", names["unbound"])
    assert re.fullmatch(r"kworker/0:\d+H", names["highpri"])


@pytest.mark.parametrize("mode,seed", cases())
def test_workers_are_made_on_demand_up_to_the_limit(mode, seed):
    def body(rt):
        wqm.set_pool_limits(max_workers=3)
        wq = wqm.alloc_workqueue("q", wqm.WQ_UNBOUND)
        gate = ksync.Completion("gate")
        running = []

        def fn(w):
            running.append(w.data)
            gate.wait()
        for i in range(6):
            wqm.queue_work(wq, Work(fn, data=i))
        until(lambda: len(running) == 3, "three works running")
        ksync.msleep(1)                         # give a fourth worker every chance to appear
        busy, peak = len(running), wq.pool.peak_workers
        gate.complete_all()
        wqm.flush_workqueue(wq)
        wqm.destroy_workqueue(wq)
        return busy, peak, sorted(running)
    rt, (busy, peak, ran) = run(body, mode, seed)
    assert (busy, peak) == (3, 3)
    assert ran == list(range(6))
    assert kinds(rt) == []


@pytest.mark.parametrize("mode,seed", cases())
def test_surplus_idle_workers_idle_out_leaving_one(mode, seed):
    def body(rt):
        wqm.set_pool_limits(max_workers=4, idle_timeout_ms=2)
        wq = wqm.alloc_workqueue("q", wqm.WQ_UNBOUND)
        gate = ksync.Completion("gate")
        running = []

        def fn(w):
            running.append(1)
            gate.wait()
        for _ in range(4):
            wqm.queue_work(wq, Work(fn))
        until(lambda: len(running) == 4, "four works running")
        peak = len(wq.pool.workers)
        gate.complete_all()
        wqm.flush_workqueue(wq)
        until(lambda: len(wq.pool.workers) == 1, "the surplus workers to idle out")
        left = [w.thread for w in wq.pool.workers]
        ksync.msleep(5)                         # the last one stays
        stays = [w.thread for w in wq.pool.workers] == left
        ran = []
        wqm.queue_work(wq, Work(lambda w: ran.append(1)))   # and still takes work
        wqm.flush_workqueue(wq)
        wqm.destroy_workqueue(wq)
        return peak, stays, len(ran)
    rt, res = run(body, mode, seed)
    assert res == (4, True, 1)
    assert kinds(rt) == []


@pytest.mark.parametrize("mode,seed", cases())
def test_rescuer_makes_progress_when_no_worker_can_be_made(mode, seed):
    def body(rt):
        wqm.set_pool_limits(max_workers=0)
        wq = wqm.alloc_workqueue("reclaim", wqm.WQ_MEM_RECLAIM)
        ran = []
        for i in range(5):
            wqm.queue_work(wq, Work(lambda w: ran.append((w.data, ksync.current_thread().name)),
                                    data=i))
        wqm.flush_workqueue(wq)
        workers = len(wq.pool.workers)
        wqm.destroy_workqueue(wq)
        return sorted(ran), workers
    rt, (ran, workers) = run(body, mode, seed)
    assert ran == [(i, "reclaim") for i in range(5)]   # the rescuer, named after its queue
    assert workers == 0
    assert kinds(rt) == []


@pytest.mark.parametrize("mode,seed", cases())
def test_rescuer_runs_a_work_that_the_busy_workers_wait_for(mode, seed):
    # The one worker allowed runs `a`, which waits for `b` on the same queue:
    # only the rescuer can run `b`.
    def body(rt):
        wqm.set_pool_limits(max_workers=1)
        wq = wqm.alloc_workqueue("reclaim", wqm.WQ_MEM_RECLAIM | wqm.WQ_UNBOUND)
        b_done = ksync.Completion("b done")
        who = {}

        def a(w):
            who["a"] = ksync.current_thread().name
            wqm.queue_work(wq, b)
            b_done.wait()

        def fb(w):
            who["b"] = ksync.current_thread().name
            b_done.complete()
        b = Work(fb, name="b")
        wqm.queue_work(wq, Work(a, name="a"))
        wqm.flush_workqueue(wq)
        wqm.destroy_workqueue(wq)
        return who
    rt, who = run(body, mode, seed)
    assert who["a"].startswith("kworker/u") and who["b"] == "reclaim"
    assert kinds(rt) == []


@pytest.mark.parametrize("mode,seed", cases())
def test_without_a_rescuer_no_worker_means_a_reported_deadlock(mode, seed):
    def body(rt):
        wqm.set_pool_limits(max_workers=0)
        wq = wqm.alloc_workqueue("plain")
        wqm.queue_work(wq, Work(lambda w: None, name="stuck"))
        wqm.flush_workqueue(wq)                 # nobody will ever run it
    rt, _ = run(body, mode, seed)
    assert kinds(rt) == ["deadlock"]
    assert "flush_workqueue plain" in rt.reports[0].text


@pytest.mark.parametrize("mode,seed", cases())
def test_exception_in_a_work_is_reported_and_the_worker_lives_on(mode, seed):
    def body(rt):
        wqm.set_pool_limits(max_workers=1)
        wq = wqm.alloc_workqueue("q")
        who = []

        def broken(w):
            who.append(ksync.current_thread())
            raise ValueError("bad root")
        wqm.queue_work(wq, Work(broken))
        wqm.queue_work(wq, Work(lambda w: who.append(ksync.current_thread()), name="next"))
        wqm.flush_workqueue(wq)
        alive = not who[0].done
        wqm.destroy_workqueue(wq)
        return who[0] is who[1], alive, who[0].name
    rt, (same, alive, worker) = run(body, mode, seed)
    assert same and alive
    assert kinds(rt) == ["warn"]
    r = rt.reports[0]
    assert "broken" in r.title and worker in r.title and "ValueError" in r.title
    assert "bad root" in r.text and "function test_exception_in_a_work" in r.text
    d = r.to_dict()
    assert (d["thread"], d["worker"], d["exception"]) == (worker, worker, "ValueError: bad root")


@pytest.mark.parametrize("mode,seed", cases())
def test_destroy_drains_stops_the_workers_and_reports_later_queueing(mode, seed):
    def body(rt):
        wqm.set_pool_limits(max_workers=4)
        wq = wqm.alloc_workqueue("doomed", wqm.WQ_MEM_RECLAIM | wqm.WQ_UNBOUND)
        ran = []
        for _ in range(6):
            wqm.queue_work(wq, Work(lambda w: (ksync.msleep(0.1), ran.append(1))))
        threads = [w.thread for w in wq.pool.workers] + [wq.rescuer.thread]
        wqm.destroy_workqueue(wq)
        stopped = all(t is None or t.done for t in threads)
        late = Work(lambda w: ran.append("late"), name="late")
        queued = wqm.queue_work(wq, late)
        wqm.destroy_workqueue(wq)               # twice: a warning, not a hang
        return len(ran), stopped, queued, wq.destroyed
    rt, res = run(body, mode, seed)
    assert res == (6, True, False, True)
    assert kinds(rt) == ["warn", "warn"]
    late, twice = rt.reports
    assert late.title == "queue_work: late queued on destroyed workqueue doomed"
    assert "test_pool.py" in late.text and "main" in late.text
    assert "destroyed twice" in twice.title


@pytest.mark.parametrize("mode,seed", cases())
def test_a_queue_allocated_while_another_is_destroyed_gets_workers(mode, seed):
    def body(rt):
        old = wqm.alloc_workqueue("old", wqm.WQ_UNBOUND)
        wqm.queue_work(old, Work(lambda w: None))
        ran = []

        def other():
            new = wqm.alloc_workqueue("new", wqm.WQ_UNBOUND)
            wqm.queue_work(new, Work(lambda w: ran.append(1)))
            wqm.flush_workqueue(new)
            wqm.destroy_workqueue(new)
        t = rt.spawn(other, name="other")
        wqm.destroy_workqueue(old)
        t.join()
        return len(ran)
    rt, n = run(body, mode, seed)
    assert n == 1
    assert kinds(rt) == []


@pytest.mark.parametrize("mode,seed", cases())
def test_runtime_exit_runs_queued_works_and_drops_armed_timers(mode, seed):
    ran = []

    def body(rt):
        wq = wqm.alloc_workqueue("left-behind")
        for i in range(5):
            wqm.queue_work(wq, Work(lambda w: (ksync.msleep(0.1), ran.append(w.data)), data=i))
        wqm.queue_work(wqm.system_wq, Work(lambda w: ran.append("system")))
        wqm.queue_delayed_work(wq, wqm.DelayedWork(lambda w: ran.append("timer")), 3_600_000)
        # returns without flushing or destroying anything
    rt, _ = run(body, mode, seed)
    assert sorted(ran, key=str) == [0, 1, 2, 3, 4, "system"]
    assert kinds(rt) == []


@pytest.mark.parametrize("mode,seed", cases())
def test_a_work_returning_with_a_lock_held_is_reported(mode, seed):
    def body(rt):
        wq = wqm.alloc_workqueue("q")
        lock = ksync.SpinLock("leaky_lock")
        w = Work(lambda w: lock.lock(), name="leaker")
        wqm.queue_work(wq, w)
        wqm.flush_work(w)
        wqm.destroy_workqueue(wq)
    rt, _ = run(body, mode, seed)
    assert kinds(rt) == ["warn"]
    r = rt.reports[0]
    assert r.title.startswith("workqueue leaked lock or atomic: kworker/")
    assert "leaky_lock" in r.text and "<lambda>" in r.text


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode,seed", cases())
def test_workers_idling_out_while_works_arrive_never_strand_a_work(mode, seed):
    # Idle timeout 0: surplus workers leave the moment they find nothing to do,
    # racing the queueing threads' wake-ups.
    def body(rt):
        wqm.set_pool_limits(max_workers=8, idle_timeout_ms=0)
        wq = wqm.alloc_workqueue("churn", wqm.WQ_UNBOUND)
        ran = [0]

        def fn(w):
            ran[0] += 1

        def producer(k):
            for r in range(40):
                works = [Work(fn) for _ in range(1 + (r + k) % 5)]
                for w in works:
                    wqm.queue_work(wq, w)
                for w in works:
                    wqm.flush_work(w)
        ts = [rt.spawn(producer, k, name=f"p{k}") for k in range(3)]
        for t in ts:
            t.join()
        wqm.destroy_workqueue(wq)
        return ran[0]
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)     # switch threads often, into every narrow window
    try:
        rt, n = run(body, mode, seed)
    finally:
        sys.setswitchinterval(old)
    assert n == sum(1 + (r + k) % 5 for k in range(3) for r in range(40))
    assert kinds(rt) == []
