"""SpinLock and Mutex: mutual exclusion, trylock, atomic context, misuse reports."""

from __future__ import annotations

import pytest

import ksync
from ksync import Mutex, SpinLock

from .helpers import MODES, SEEDS, kinds, run


def _racy_increments(rt, lock, n_threads=3, n=20):
    box = {"v": 0}

    def worker():
        for _ in range(n):
            if lock is not None:
                lock.lock()
            v = box["v"]
            ksync.cond_resched() if lock is None else rt.point(ksync.current_thread())
            box["v"] = v + 1
            if lock is not None:
                lock.unlock()

    for i in range(n_threads):
        rt.spawn(worker, name=f"w{i}")
    return box


@pytest.mark.parametrize("cls", [SpinLock, Mutex])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", SEEDS)
def test_lock_makes_read_modify_write_exclusive(cls, mode, seed):
    box = {}

    def body(rt):
        box.update(b=_racy_increments(rt, cls("counter_lock")))

    run(body, mode, seed, noise=0.3 if mode == "free" else 0.0)
    assert box["b"]["v"] == 60


def test_without_a_lock_controlled_mode_loses_updates_for_some_seed():
    lost = False
    for seed in range(10):
        box = {}
        run(lambda rt, box=box: box.update(b=_racy_increments(rt, None)), "controlled", seed)
        lost |= box["b"]["v"] < 60
    assert lost


@pytest.mark.parametrize("mode", MODES)
def test_trylock_fails_while_held_elsewhere_and_succeeds_when_free(mode):
    def body(rt):
        lk = SpinLock("l")
        got = ksync.Completion("held")
        release = ksync.Completion("release")

        def holder():
            with lk:
                got.complete()
                release.wait()

        t = rt.spawn(holder, name="holder")
        got.wait()
        first = lk.trylock()
        release.complete()
        t.join()
        second = lk.trylock()
        lk.unlock()
        return first, second

    _, (first, second) = run(body, mode)
    assert (first, second) == (False, True)


@pytest.mark.parametrize("mode", MODES)
def test_spinlock_is_atomic_context_mutex_is_not(mode):
    def body(rt):
        t = ksync.current_thread()
        with SpinLock("s"):
            a = t.atomic
        with Mutex("m"):
            b = t.atomic
        return a, b, t.atomic

    _, got = run(body, mode)
    assert got == (1, 0, 0)


@pytest.mark.parametrize("cls", [SpinLock, Mutex])
@pytest.mark.parametrize("mode", MODES)
def test_unlock_of_a_lock_not_held_is_reported_with_name_and_call_site(cls, mode):
    def body(rt):
        cls("kvm->slots_lock").unlock()

    rt, _ = run(body, mode)
    assert kinds(rt) == ["bad-unlock"]
    r = rt.reports[0]
    assert "kvm->slots_lock" in r.title and "test_locks.py" in r.title
    assert "bad unlock balance detected" in r.text


@pytest.mark.parametrize("mode", MODES)
def test_unlock_by_another_thread_is_reported_and_leaves_the_lock_held(mode):
    def body(rt):
        lk = Mutex("owned")
        lk.lock()
        rt.spawn(lk.unlock, name="thief").join()
        still = lk.is_locked()
        lk.unlock()
        return still

    rt, still = run(body, mode)
    assert still is True
    assert kinds(rt) == ["bad-unlock"]
    assert "held by another thread" in rt.reports[0].text and rt.reports[0].thread == "thief"


@pytest.mark.parametrize("mode", MODES)
def test_double_unlock_is_reported_once_per_extra_unlock(mode):
    def body(rt):
        lk = SpinLock("twice")
        lk.lock()
        lk.unlock()
        lk.unlock()

    rt, _ = run(body, mode)
    assert kinds(rt) == ["bad-unlock"]


def test_reinit_while_held_is_reported():
    def body(rt):
        lk = SpinLock("reinit")
        lk.lock()
        lk.reinit()
        lk.unlock()

    rt, _ = run(body)
    assert kinds(rt) == ["bad-unlock"] and "re-initialised while held" in rt.reports[0].text


def test_thread_exiting_with_a_lock_held_is_reported_when_lockdep_is_on():
    def body(rt):
        lk = SpinLock("leaked")
        rt.spawn(lk.lock, name="leaker").join()

    rt, _ = run(body, checks=("lockdep",))
    assert "lock-held-at-exit" in kinds(rt)
    assert "leaked" in rt.reports[kinds(rt).index("lock-held-at-exit")].text


def test_lock_needs_a_class_name():
    with pytest.raises(ksync.KsyncError, match="class name"):
        SpinLock("")


@pytest.mark.parametrize("mode", MODES)
def test_lockdep_assert_held_warns_only_when_not_held(mode):
    def body(rt):
        rw = ksync.RwLock("kvm->mmu_lock")
        with rw.read():
            ok_read = ksync.lockdep_assert_held(rw, "read")
            bad_write = ksync.lockdep_assert_held(rw, "write")
        bad_any = ksync.lockdep_assert_held(rw)
        return ok_read, bad_write, bad_any

    rt, got = run(body, mode)
    assert got == (True, False, False)
    assert kinds(rt) == ["warn", "warn"]
    assert "kvm->mmu_lock for write" in rt.reports[0].title
