"""RwLock: shared readers, exclusive writers, qrwlock writer preference, cond_resched."""

from __future__ import annotations

import pytest

import ksync
from ksync import Completion, RwLock

from .helpers import MODES, SEEDS, kinds, run


@pytest.mark.parametrize("mode", MODES)
def test_readers_share_the_lock(mode):
    def body(rt):
        lk = RwLock("kvm->mmu_lock")
        both_in = Completion("both")
        inside = ksync.Atomic(0, "inside")

        def reader():
            with lk.read():
                if inside.add_return(1) == 2:
                    both_in.complete_all()
                both_in.wait()

        ts = [rt.spawn(reader, name=f"r{i}") for i in range(2)]
        for t in ts:
            t.join()

    rt, _ = run(body, mode)
    assert rt.reports == []


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", SEEDS)
def test_writer_excludes_readers_and_writers(mode, seed):
    def body(rt):
        lk = RwLock("l")
        state = {"writers": 0, "readers": 0, "bad": 0}

        def writer():
            for _ in range(5):
                with lk.write():
                    state["writers"] += 1
                    state["bad"] += state["writers"] > 1 or state["readers"] > 0
                    ksync.cond_resched()
                    state["writers"] -= 1

        def reader():
            for _ in range(5):
                with lk.read():
                    state["readers"] += 1
                    state["bad"] += state["writers"] > 0
                    ksync.cond_resched()
                    state["readers"] -= 1

        for i in range(2):
            rt.spawn(writer, name=f"w{i}")
            rt.spawn(reader, name=f"r{i}")
        return state

    _, state = run(body, mode, seed, noise=0.3 if mode == "free" else 0.0)
    assert state["bad"] == 0


@pytest.mark.parametrize("mode", MODES)
def test_waiting_writer_holds_back_new_readers(mode):
    def body(rt):
        lk = RwLock("kvm->mmu_lock")
        order = []
        r1_in, release = Completion("r1 in"), Completion("release r1")

        def first_reader():
            with lk.read():
                r1_in.complete()
                release.wait()
            order.append("r1 out")

        def writer():
            with lk.write():
                order.append("writer")

        def late_reader():
            with lk.read():
                order.append("r2")

        rt.spawn(first_reader, name="r1")
        r1_in.wait()
        rt.spawn(writer, name="writer")
        while lk.writers_waiting == 0:          # until the writer queues
            ksync.msleep(1)
        rt.spawn(late_reader, name="r2")
        while not lk.is_contended() or len(lk._waiters) < 2:
            ksync.msleep(1)
        release.complete()
        return order

    rt, order = run(body, mode)
    assert order == ["r1 out", "writer", "r2"]
    assert rt.reports == []


@pytest.mark.parametrize("mode", MODES)
def test_reader_retaking_the_lock_behind_a_waiting_writer_deadlocks(mode):
    def body(rt):
        lk = RwLock("kvm->mmu_lock")
        r_in = Completion("reader in")

        def reader():
            with lk.read():
                r_in.complete()
                while lk.writers_waiting == 0:
                    ksync.msleep(1)
                with lk.read():       # recursive read: queued behind the writer
                    pass

        def writer():
            r_in.wait()
            with lk.write():
                pass

        rt.spawn(reader, name="vcpu-0")
        rt.spawn(writer, name="vcpu-1")

    rt, _ = run(body, mode)
    assert kinds(rt) == ["deadlock"]
    assert "vcpu-0 waits for rwlock kvm->mmu_lock (read)" in rt.reports[0].text


@pytest.mark.parametrize("mode", MODES)
def test_cond_resched_rwlock_read_drops_and_retakes_only_when_contended(mode):
    def body(rt):
        lk = RwLock("kvm->mmu_lock")
        got_write = Completion("writer done")
        lk.read_lock()
        uncontended = lk.cond_resched_read()

        def writer():
            with lk.write():
                pass
            got_write.complete()

        rt.spawn(writer, name="writer")
        while not lk.is_contended():
            rt.point(ksync.current_thread()) if rt.controlled else ksync.msleep(0.1)
        contended = ksync.cond_resched_rwlock_read(lk)
        held_after = lk.held_by(ksync.current_thread(), "read")
        lk.read_unlock()
        got_write.wait()
        return uncontended, contended, held_after

    rt, got = run(body, mode)
    assert got[1:] == (True, True)
    assert rt.reports == []


@pytest.mark.parametrize("mode", MODES)
def test_read_unlock_without_read_lock_is_reported(mode):
    rt, _ = run(lambda rt: RwLock("kvm->mmu_lock").read_unlock(), mode)
    assert kinds(rt) == ["bad-unlock"] and "kvm->mmu_lock" in rt.reports[0].title
