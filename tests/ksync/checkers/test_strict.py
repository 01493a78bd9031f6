"""Strict mode (panic_on_warn): the first report is raised at its call site."""

from __future__ import annotations

import traceback

import pytest

import ksync

from .util import cases, spawn_all


def _abba(rt):
    a, b = ksync.SpinLock("A"), ksync.SpinLock("B")
    with a, b:
        pass
    with b, a:
        pass


def _sleep_in_atomic(rt):
    with ksync.SpinLock("L"):
        ksync.msleep(1)


def _uaf(rt):
    obj = ksync.track(ksync.Shared("obj", 0), "obj")
    ksync.kfree(obj)
    obj.write(1)


def _double_free(rt):
    obj = ksync.track(object(), "obj")
    ksync.kfree(obj)
    ksync.kfree(obj)


def _refcount(rt):
    ksync.Refcount(0, "obj->refcount").inc()


def _race(rt):
    cell, wrote = ksync.Shared("cell", 0), []

    def writer():
        cell.write(1)
        wrote.append(True)          # a plain Python flag: no happens-before
    t = rt.spawn(writer, name="writer")
    while not wrote:
        ksync.cond_resched()
    cell.write(2)
    t.join()


def _failed_assert(rt):
    ksync.lockdep_assert_held(ksync.SpinLock("kvm->mmu_lock"))


def _recursive(rt):
    lk = ksync.RwLock("kvm->mmu_lock")
    with lk.read():
        with lk.read():
            pass


def _held_freed(rt):
    class Root:
        def __init__(self):
            self.lock = ksync.SpinLock("root->lock")
    root = ksync.track(Root(), "root")
    with root.lock:
        ksync.kfree(root)


@pytest.mark.parametrize("body,kind,line", [
    (_abba, "circular-locking-dependency", "with b, a:"),
    (_sleep_in_atomic, "sleep-in-atomic", "ksync.msleep(1)"),
    (_uaf, "use-after-free", "obj.write(1)"),
    (_double_free, "double-free", "ksync.kfree(obj)"),
    (_refcount, "refcount", 'ksync.Refcount(0, "obj->refcount").inc()'),
    (_race, "data-race", "cell.write(2)"),
    (_failed_assert, "warn", "ksync.lockdep_assert_held("),
    (_recursive, "recursive-locking", "with lk.read():"),
    (_held_freed, "held-lock-freed", "ksync.kfree(root)"),
], ids=lambda x: x if isinstance(x, str) and "-" in x else None)
@pytest.mark.parametrize("mode", ["controlled", "free"])
def test_the_first_report_is_raised_at_its_call_site(body, kind, line, mode):
    rt = ksync.Runtime(mode=mode, strict=True)
    with pytest.raises(ksync.ReportError) as info:
        with rt:
            body(rt)
    assert info.value.report.kind == kind
    assert rt.reports[0] is info.value.report
    frames = [f for f in traceback.extract_tb(info.tb) if f.filename == __file__]
    assert frames and line in frames[-1].line


@pytest.mark.parametrize("mode", ["controlled", "free"])
def test_a_report_in_a_spawned_thread_fails_that_thread(mode):
    def body(rt):
        lock = ksync.SpinLock("L")

        def bad():
            with lock:
                ksync.might_sleep()
        t = rt.spawn(bad, name="bad")
        with pytest.raises(ksync.ThreadFailed) as info:
            t.join()
        assert isinstance(info.value.exc, ksync.ReportError)
        assert info.value.exc.report.kind == "sleep-in-atomic"
        with lock:                          # the failing thread released it on the way out
            pass
    with ksync.Runtime(mode=mode, strict=True) as rt:
        body(rt)
    assert [r.kind for r in rt.reports] == ["sleep-in-atomic"]


@pytest.mark.parametrize("mode", ["controlled", "free"])
def test_a_lock_held_at_thread_exit_fails_the_thread_without_hanging(mode):
    with pytest.raises(ksync.ThreadFailed, match="lock held when thread leaky exited"):
        with ksync.Runtime(mode=mode, strict=True) as rt:
            lk = ksync.SpinLock("L")
            rt.spawn(lk.lock, name="leaky").join()


@pytest.mark.parametrize("mode,seed", cases())
def test_a_correct_program_runs_clean_under_strict_with_every_checker(mode, seed):
    def body(rt):
        slots, mmu = ksync.Mutex("kvm->slots_lock"), ksync.RwLock("kvm->mmu_lock")
        pages = ksync.SpinLock("kvm->tdp_mmu_pages_lock")
        ref = ksync.Refcount(1, "root->tdp_mmu_root_count")
        nroots, stat = ksync.Shared("kvm->nr_roots", 0), ksync.Atomic(0, "stat")
        root = ksync.track(ksync.Shared("root->spt", 0), "root")
        done = ksync.Completion("zapped")

        def vcpu():
            with slots:
                with mmu.read():
                    if ref.inc_not_zero():
                        with pages:
                            nroots.write(nroots.read() + 1)
                        root.read()
                        with ksync.rcu:
                            stat.inc()
                        if ref.dec_and_test():
                            ksync.kfree(root)
            ksync.cond_resched()

        def zapper():
            with mmu.write():
                root.write(0)
            done.complete()
        spawn_all(rt, vcpu, vcpu, zapper)
        done.wait()
        ksync.synchronize_rcu()
        with mmu.write():
            if ref.dec_and_test():
                ksync.kfree(root)
    with ksync.Runtime(mode=mode, seed=seed, strict=True) as rt:
        body(rt)
    assert rt.reports == []


@pytest.mark.parametrize("mode", ["controlled", "free"])
def test_a_deadlock_is_raised_on_exit_once_every_thread_is_unwound(mode):
    with pytest.raises(ksync.ReportError, match="deadlock") as info:
        with ksync.Runtime(mode=mode, strict=True, checks=()) as rt:
            lk = ksync.SpinLock("L")

            def twice():
                lk.lock()
                lk.lock()
            rt.spawn(twice, name="twice").join()
    assert info.value.report.kind == "deadlock"
    assert [r.kind for r in rt.reports] == ["deadlock"]
    assert all(t.state == "done" for t in rt.threads)
