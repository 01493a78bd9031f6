"""lockdep beyond cycles: inversions in runs that did not deadlock, locks held at
exit or freed, failed lockdep_assert_held, bad unlocks."""

from __future__ import annotations

import pytest

import ksync

from .util import MODES, cases, kinds, of_kind, run, spawn_all

LOCKDEP = ("lockdep",)


@pytest.mark.parametrize("mode", MODES)
def test_concurrent_abba_is_reported_whether_or_not_the_run_deadlocked(mode):
    outcomes = []
    for seed in range(20):
        def body(rt):
            a, b = ksync.SpinLock("A"), ksync.SpinLock("B")

            def ab():
                with a, b:
                    pass

            def ba():
                with b, a:
                    pass
            spawn_all(rt, ab, ba)
        rt = run(body, mode, seed, LOCKDEP)
        assert len(of_kind(rt, "circular-locking-dependency")) == 1
        outcomes.append("deadlock" in kinds(rt))
    assert False in outcomes                 # some runs finished without deadlocking
    if mode == "controlled":
        assert True in outcomes              # and some seeds do deadlock


@pytest.mark.parametrize("mode,seed", cases()[::2])
def test_retaking_mmu_lock_for_read_is_reported_even_without_a_waiting_writer(mode, seed):
    # With a writer queued between the two read_locks this deadlocks; lockdep
    # reports it from any run, including those where the writer came later.
    def body(rt):
        mmu = ksync.RwLock("kvm->mmu_lock")

        def fault():
            with mmu.read():
                with mmu.read():
                    pass

        def zap_all():
            with mmu.write():
                pass
        spawn_all(rt, fault, zap_all)
    rt = run(body, mode, seed, LOCKDEP)
    assert len(of_kind(rt, "recursive-locking")) == 1
    assert set(kinds(rt)) <= {"recursive-locking", "deadlock"}


@pytest.mark.parametrize("mode,seed", cases()[::2])
def test_a_thread_exiting_with_a_lock_held_is_reported(mode, seed):
    def body(rt):
        lk = ksync.SpinLock("kvm->mmu_lock")

        def leaky():
            lk.lock()
        rt.spawn(leaky, name="leaky").join()
    rt = run(body, mode, seed, LOCKDEP)
    assert kinds(rt) == ["lock-held-at-exit"]
    r = rt.reports[0]
    assert r.thread == "leaky" and "leaky/1 is leaving the kernel with locks still held!" in r.text
    assert "kvm->mmu_lock (write)" in r.text


@pytest.mark.parametrize("mode,seed", cases()[::2])
def test_freeing_an_object_whose_lock_is_held_is_reported(mode, seed):
    class Root:
        def __init__(self):
            self.lock = ksync.Mutex("root->lock")

    def body(rt):
        root = ksync.track(Root(), "root")
        taken, freed = ksync.Completion("taken"), ksync.Completion("freed")

        def user():
            with root.lock:
                taken.complete()
                freed.wait()

        def freer():
            taken.wait()
            ksync.kfree(root)                # the bug: user still holds root->lock
            freed.complete()
        t = rt.spawn(user, name="user")
        rt.spawn(freer, name="freer").join()
        t.join()
    rt = run(body, mode, seed, LOCKDEP)
    (r,) = of_kind(rt, "held-lock-freed")
    assert "WARNING: held lock freed!" in r.text
    assert "(root->lock){write} as root.lock, held by user/1" in r.text
    assert r.data["holders"] == ["user"] and r.data["locks"] == ["root->lock"]


@pytest.mark.parametrize("mode,seed", cases()[::2])
def test_freeing_after_the_lock_is_released_is_silent(mode, seed):
    class Root:
        def __init__(self):
            self.lock = ksync.SpinLock("root->lock")

    def body(rt):
        root = ksync.track(Root(), "root")
        done = ksync.Completion("done")

        def user():
            with root.lock:
                pass
            done.complete()

        def freer():
            done.wait()
            ksync.kfree(root)
        spawn_all(rt, user, freer)
    assert run(body, mode, seed, LOCKDEP).reports == []


@pytest.mark.parametrize("mode", MODES)
def test_lockdep_assert_held_fails_without_the_lock_or_in_the_wrong_mode(mode):
    def body(rt):
        mmu = ksync.RwLock("kvm->mmu_lock")
        with mmu.write():
            assert ksync.lockdep_assert_held(mmu)
            assert ksync.lockdep_assert_held_write(mmu)
        with mmu.read():
            assert ksync.lockdep_assert_held_read(mmu)
            assert not ksync.lockdep_assert_held_write(mmu)     # the bug: needs write
        assert not ksync.lockdep_assert_held(mmu)
    rt = run(body, mode, 0, LOCKDEP)
    assert kinds(rt) == ["warn", "warn"]
    assert "does not hold kvm->mmu_lock for write at" in rt.reports[0].text
    assert rt.reports[0].data["lock"] == "kvm->mmu_lock"
    assert "test_lockdep_misuse.py" in rt.reports[1].data["site"]


@pytest.mark.parametrize("mode", MODES)
def test_unlocking_a_lock_not_held_is_a_bad_unlock(mode):
    def body(rt):
        lk = ksync.SpinLock("L")
        lk.unlock()
        with lk:
            pass
    rt = run(body, mode, 0, LOCKDEP)
    assert kinds(rt) == ["bad-unlock"]
    assert "WARNING: bad unlock balance detected!" in rt.reports[0].text
