"""Sleep-in-atomic: might_sleep under a spinning lock or inside an RCU read section."""

from __future__ import annotations

import pytest

import ksync

from .util import MODES, cases, kinds, run, spawn_all

SLEEP = ("atomic_sleep",)


def _mutex_under_spinlock(rt):
    pages, slots = ksync.SpinLock("kvm->tdp_mmu_pages_lock"), ksync.Mutex("kvm->slots_lock")

    def vcpu():
        with pages:
            with slots:                    # the bug: mutex_lock() may sleep
                pass
    spawn_all(rt, vcpu, vcpu)


@pytest.mark.parametrize("mode,seed", cases())
def test_taking_a_mutex_under_a_spinlock_is_sleeping_in_atomic(mode, seed):
    rt = run(_mutex_under_spinlock, mode, seed, ("atomic_sleep", "lockdep"))
    assert kinds(rt) == ["sleep-in-atomic"]      # once per call site, whichever thread
    r = rt.reports[0]
    for piece in ("BUG: sleeping function called from invalid context at ",
                  "test_atomic_sleep.py:", "in_atomic(): 1, irqs_disabled(): 0",
                  "preempt_count: 1, expected: 0", "RCU nest depth: 0, expected: 0",
                  "might_sleep() called with spinning lock(s) held: kvm->tdp_mmu_pages_lock",
                  "1 lock held by t", " #0: (kvm->tdp_mmu_pages_lock){write}, at: ",
                  "Call Trace:", " vcpu"):
        assert piece in r.text, piece
    d = r.to_dict()
    assert d["held"] == ["kvm->tdp_mmu_pages_lock"] and d["preempt_count"] == 1
    assert d["thread"] in ("t0", "t1") and d["stack"][0].endswith(" vcpu")


@pytest.mark.parametrize("mode,seed", cases())
def test_the_mutex_outside_the_spinlock_is_silent(mode, seed):
    def body(rt):
        pages, slots = ksync.SpinLock("kvm->tdp_mmu_pages_lock"), ksync.Mutex("kvm->slots_lock")

        def vcpu():
            with slots:
                ksync.msleep(0.01)         # sleeping under a mutex is allowed
                with pages:
                    pass
            ksync.cond_resched()
        spawn_all(rt, vcpu, vcpu)
    rt = run(body, mode, seed, ("atomic_sleep", "lockdep"))
    assert rt.reports == []


@pytest.mark.parametrize("mode,seed", cases()[::2])
def test_synchronize_rcu_inside_a_read_section_is_reported(mode, seed):
    def body(rt):
        def walker():
            with ksync.rcu:
                ksync.synchronize_rcu()    # waits for itself: a real deadlock in the kernel
        rt.spawn(walker, name="walker").join()
    rt = run(body, mode, seed, SLEEP)
    assert kinds(rt) == ["sleep-in-atomic"]
    r = rt.reports[0]
    assert "in_atomic(): 0" in r.text and "RCU nest depth: 1, expected: 0" in r.text
    assert "inside an RCU read-side critical section" in r.text
    assert "1 lock held by walker/1:\n #0: (rcu_read_lock){read-recursive}" in r.text


@pytest.mark.parametrize("mode,seed", cases()[::2])
def test_synchronize_rcu_after_the_read_section_is_silent(mode, seed):
    def body(rt):
        def walker():
            with ksync.rcu:
                pass
            ksync.synchronize_rcu()
        spawn_all(rt, walker, walker)
    assert run(body, mode, seed, SLEEP).reports == []


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sleeper", ["msleep", "wait", "cond_resched", "might_sleep"])
def test_every_might_sleep_point_under_an_rwlock_is_reported(mode, sleeper):
    def body(rt):
        mmu = ksync.RwLock("kvm->mmu_lock")
        done = ksync.Completion("done")
        done.complete()
        call = {"msleep": lambda: ksync.msleep(1), "wait": done.wait,
                "cond_resched": ksync.cond_resched, "might_sleep": ksync.might_sleep}[sleeper]
        with mmu.read():
            call()
    rt = run(body, mode, 0, SLEEP)
    assert kinds(rt) == ["sleep-in-atomic"]
    assert "spinning lock(s) held: kvm->mmu_lock" in rt.reports[0].text
    assert rt.reports[0].data["call"] == {"msleep": "msleep()", "cond_resched": "cond_resched()"
                                          }.get(sleeper, "might_sleep()")


@pytest.mark.parametrize("mode", MODES)
def test_cond_resched_rwlock_drops_the_lock_first_and_is_silent(mode):
    def body(rt):
        mmu = ksync.RwLock("kvm->mmu_lock")
        with mmu.read():
            for _ in range(60):
                mmu.cond_resched_read()
    assert run(body, mode, 0, SLEEP).reports == []


@pytest.mark.parametrize("mode", MODES)
def test_sleeping_in_an_rcu_callback_is_softirq_context(mode):
    def free_root():
        ksync.might_sleep()

    def body(rt):
        ksync.call_rcu(free_root)
        ksync.rcu_barrier()
    rt = run(body, mode, 0, SLEEP)
    assert kinds(rt) == ["sleep-in-atomic"]
    assert rt.reports[0].thread == "rcu_gp"
    assert "in softirq context (an RCU callback)" in rt.reports[0].text


@pytest.mark.parametrize("mode", MODES)
def test_flush_work_under_a_spinlock_is_reported(mode):
    import workqueue

    def body(rt):
        lock = ksync.SpinLock("kvm->mmu_lock")
        wq = workqueue.alloc_workqueue("kvm", 0, 0)
        work = workqueue.Work(lambda w: None, name="zap")
        workqueue.queue_work(wq, work)
        with lock:
            workqueue.flush_work(work)
        workqueue.destroy_workqueue(wq)
    rt = run(body, mode, 0, SLEEP)
    assert kinds(rt) == ["sleep-in-atomic"]
    assert "kvm->mmu_lock" in rt.reports[0].text


def test_each_call_site_is_reported_once():
    def body(rt):
        lock = ksync.SpinLock("L")
        for _ in range(3):
            with lock:
                ksync.might_sleep()
        with lock:
            ksync.might_sleep()
    rt = run(body, "controlled", 0, SLEEP)
    assert kinds(rt) == ["sleep-in-atomic", "sleep-in-atomic"]


def test_atomic_sleep_off_reports_nothing():
    assert run(_mutex_under_spinlock, "controlled", 0, ("races",)).reports == []
