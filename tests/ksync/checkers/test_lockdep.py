"""lockdep: inversions, recursion, read-lock kinds and the strong-path rule."""

from __future__ import annotations

import pytest

import ksync
from ksync import lock_map_acquire, lock_map_release

from .util import MODES, SEEDS, cases, kinds, run, spawn_all

LOCKDEP = ("lockdep",)


def _abba_sequential(rt: ksync.Runtime) -> None:
    a, b = ksync.SpinLock("A"), ksync.SpinLock("B")
    with a, b:
        pass
    with b, a:
        pass


@pytest.mark.parametrize("mode,seed", cases())
def test_abba_in_one_thread_is_reported_though_nothing_deadlocked(mode, seed):
    rt = run(_abba_sequential, mode, seed, LOCKDEP)
    assert kinds(rt) == ["circular-locking-dependency"]
    r = rt.reports[0]
    assert r.data["chain"] == ["A", "B"]
    assert r.data["lock"] == "A" and r.data["held"] == ["B"]
    for piece in ("WARNING: possible circular locking dependency detected",
                  "main/0 is trying to acquire lock:", " (A){write}, at: ",
                  "but task is already holding lock:", " (B){write}, at: ",
                  "the existing dependency chain (in reverse order) is:",
                  "-> #1 (B){write}:", "-> #0 (A){write}:",
                  "Possible unsafe locking scenario:", "CPU0                    CPU1",
                  "*** DEADLOCK ***", "1 lock held by main/0:", "stack backtrace:",
                  "test_lockdep.py"):
        assert piece in r.text, piece


@pytest.mark.parametrize("mode,seed", cases())
def test_abba_in_two_threads_at_different_times_is_reported(mode, seed):
    def body(rt):
        a, b = ksync.Mutex("A"), ksync.Mutex("B")

        def ab():
            with a, b:
                pass

        def ba():
            with b, a:
                pass
        rt.spawn(ab, name="first").join()       # the second starts after the first ended
        rt.spawn(ba, name="second").join()
    rt = run(body, mode, seed, LOCKDEP)
    assert kinds(rt) == ["circular-locking-dependency"]
    text = rt.reports[0].text
    assert "second/2 is trying to acquire lock:" in text
    assert "first seen in first/1 holding (A){write}:" in text


@pytest.mark.parametrize("mode,seed", cases())
def test_consistent_order_in_many_threads_is_silent(mode, seed):
    def body(rt):
        a, b, c = ksync.SpinLock("A"), ksync.Mutex("B"), ksync.RwLock("C")

        def worker():
            for _ in range(3):
                with b:
                    with a:
                        with c.read():
                            pass
                    with c.write():
                        pass
        spawn_all(rt, worker, worker, worker)
    rt = run(body, mode, seed, LOCKDEP)
    assert rt.reports == []


def test_each_cycle_is_reported_once_and_reporting_goes_on_after_it():
    def body(rt):
        a, b, c, d = (ksync.SpinLock(n) for n in "ABCD")
        for _ in range(5):
            with a, b:
                pass
            with b, a:
                pass
        with c, d:
            pass
        with d, c:
            pass
    rt = run(body, "controlled", 0, LOCKDEP)
    assert [r.data["chain"] for r in rt.reports] == [["A", "B"], ["C", "D"]]


def test_a_longer_chain_is_reported_with_chain_exists_of():
    def body(rt):
        a, b, c = (ksync.SpinLock(n) for n in "ABC")
        with a, b:
            pass
        with b, c:
            pass
        with c, a:
            pass
    rt = run(body, "controlled", 0, LOCKDEP)
    assert kinds(rt) == ["circular-locking-dependency"]
    r = rt.reports[0]
    assert r.data["chain"] == ["A", "B", "C"]
    assert "Chain exists of:\n  A --> B --> C" in r.text
    assert [d["kind"] for d in r.data["dependencies"]] == ["EN", "EN", "EN"]


@pytest.mark.parametrize("mode", MODES)
def test_same_class_twice_is_recursive_locking_and_subclasses_are_not(mode):
    def body(rt):
        x, y = ksync.SpinLock("root->lock"), ksync.SpinLock("root->lock")
        with x, y:
            pass
        p, q = ksync.SpinLock("page->lock"), ksync.SpinLock("page->lock", subclass=1)
        with p, q:
            pass
    rt = run(body, mode, 0, LOCKDEP)
    assert kinds(rt) == ["recursive-locking"]
    text = rt.reports[0].text
    assert "WARNING: possible recursive locking detected" in text
    assert "May be due to missing lock nesting notation" in text
    assert "  lock(root->lock);\n  lock(root->lock);" in text


@pytest.mark.parametrize("mode,seed", cases())
def test_retaking_an_rwlock_for_read_is_reported_and_rcu_nesting_is_not(mode, seed):
    def body(rt):
        mmu = ksync.RwLock("kvm->mmu_lock")

        def reader():
            with ksync.rcu, ksync.rcu:     # RCU: a recursive reader
                pass
            with mmu.read():
                with mmu.read():           # qrwlock in task context: not recursive
                    pass
        spawn_all(rt, reader)
    rt = run(body, mode, seed, LOCKDEP)
    assert kinds(rt) == ["recursive-locking"]
    r = rt.reports[0]
    assert r.data["mode"] == "read" and r.data["held_mode"] == "read"
    assert "read_lock() of an rwlock_t in task context is not a recursive reader" in r.text
    assert "  rlock(kvm->mmu_lock);\n  rlock(kvm->mmu_lock);" in r.text


@pytest.mark.parametrize("mode,seed", cases())
def test_reader_writer_inversion_through_read_lock_is_reported(mode, seed):
    # T1: read_lock(L); spin_lock(M)   T2: spin_lock(M); read_lock(L).
    # With a writer queued on L, T2's read_lock waits behind it: deadlock.
    def body(rt):
        mmu, pages = ksync.RwLock("mmu_lock"), ksync.SpinLock("pages_lock")

        def t1():
            with mmu.read(), pages:
                pass

        def t2():
            with pages, mmu.read():
                pass
        rt.spawn(t1, name="t1").join()
        rt.spawn(t2, name="t2").join()
    rt = run(body, mode, seed, LOCKDEP)
    assert kinds(rt) == ["circular-locking-dependency"]
    r = rt.reports[0]
    assert sorted(d["kind"] for d in r.data["dependencies"]) == ["EN", "SN"]
    assert "rlock(mmu_lock);" in r.text


@pytest.mark.parametrize("mode,seed", cases())
def test_the_same_pattern_with_rcu_is_silent(mode, seed):
    # rcu_read_lock is a recursive reader: M -(ER)-> rcu -(SN)-> M is not strong.
    def body(rt):
        pages = ksync.SpinLock("pages_lock")

        def t1():
            with ksync.rcu, pages:
                pass

        def t2():
            with pages, ksync.rcu:
                pass
        spawn_all(rt, t1, t2)
    rt = run(body, mode, seed, LOCKDEP)
    assert rt.reports == []


def _edge(x, y, held_mode, acq_mode):
    """Record one dependency x -> y with the given kinds, through lockdep maps."""
    lock_map_acquire(x, read=held_mode != "E", recursive=False)
    lock_map_acquire(y, read=acq_mode != "N-write", recursive=acq_mode == "R")
    lock_map_release(y)
    lock_map_release(x)


@pytest.mark.parametrize("edges,deadlock", [
    # The kernel's lockdep selftests for recursive readers (lib/locking-selftest.c).
    ([("X", "Y", "E", "R"), ("Y", "Z", "E", "R"), ("Z", "X", "E", "R")], True),
    ([("X", "Y", "E", "N-write"), ("Y", "Z", "S", "R"), ("Z", "X", "E", "R")], True),
    ([("X", "Y", "E", "N-write"), ("Y", "Z", "S", "R"), ("Z", "X", "S", "N-write")], False),
    ([("X", "Y", "E", "R"), ("Y", "Z", "S", "R"), ("Z", "X", "E", "N-write")], False),
    # Two readers, each recursive into the other: nobody holds anything exclusively.
    ([("X", "Y", "S", "R"), ("Y", "X", "S", "R")], False),
    # A non-recursive reader closes the cycle: a queued writer blocks it.
    ([("X", "Y", "S", "N-read"), ("Y", "X", "S", "N-read")], True),
])
@pytest.mark.parametrize("mode", MODES)
def test_a_cycle_is_reported_exactly_when_it_is_strong(edges, deadlock, mode):
    def body(rt):
        maps = {n: ksync.LockMap(n) for n in "XYZ"}
        for x, y, h, a in edges:
            _edge(maps[x], maps[y], h, a)
    rt = run(body, mode, 0, LOCKDEP)
    assert kinds(rt) == (["circular-locking-dependency"] if deadlock else [])


@pytest.mark.parametrize("mode", MODES)
def test_a_trylock_adds_no_dependency_to_the_lock_it_takes(mode):
    def body(rt):
        a, b = ksync.SpinLock("A"), ksync.SpinLock("B")
        with b, a:
            pass
        with a:
            assert b.trylock()
            b.unlock()
        mmu = ksync.RwLock("mmu")
        with mmu.read():
            assert mmu.read_trylock()      # cannot wait, so no recursion report
            mmu.read_unlock()
    rt = run(body, mode, 0, LOCKDEP)
    assert rt.reports == []


@pytest.mark.parametrize("mode,seed", cases())
def test_flushing_a_work_map_under_the_lock_the_work_takes_is_a_cycle(mode, seed):
    # The workqueue pattern: the worker holds the work's pseudo-lock while the
    # work runs and takes L; flush_work() acquires and releases the map.
    def body(rt):
        lock = ksync.SpinLock("kvm->mmu_lock")
        work_map = ksync.LockMap("(work_completion)(&root->tdp_mmu_async_work)")

        def worker():
            lock_map_acquire(work_map)
            with lock:
                pass
            lock_map_release(work_map)

        def flusher():
            with lock:
                lock_map_acquire(work_map)
                lock_map_release(work_map)
        rt.spawn(worker, name="kworker").join()
        rt.spawn(flusher, name="vcpu").join()
    rt = run(body, mode, seed, LOCKDEP)
    assert kinds(rt) == ["circular-locking-dependency"]
    assert "(work_completion)" in rt.reports[0].text


@pytest.mark.parametrize("mode,seed", cases())
def test_flushing_without_the_lock_is_silent(mode, seed):
    def body(rt):
        lock = ksync.SpinLock("kvm->mmu_lock")
        work_map = ksync.LockMap("(work_completion)(&root->tdp_mmu_async_work)")

        def worker():
            lock_map_acquire(work_map)
            with lock:
                pass
            lock_map_release(work_map)

        def flusher():
            with lock:
                pass
            lock_map_acquire(work_map)
            lock_map_release(work_map)
        spawn_all(rt, worker, flusher)
    rt = run(body, mode, seed, LOCKDEP)
    assert rt.reports == []


@pytest.mark.parametrize("seed", SEEDS)
def test_controlled_reports_are_identical_for_the_same_seed(seed):
    def body(rt):
        locks = [ksync.SpinLock(f"L{i}") for i in range(4)]

        def worker(i):
            x, y = locks[i], locks[(i + 1) % 4]
            with x, y:
                pass
        ts = [rt.spawn(worker, i) for i in range(4)]
        for t in ts:
            t.join()
    texts = [[r.text for r in run(body, "controlled", seed, LOCKDEP).reports] for _ in range(2)]
    assert texts[0] == texts[1]
    assert len(texts[0]) == 1 and "Chain exists of:" in texts[0][0]


def test_graph_exports_as_dot_and_json():
    from ksync.checkers import get_checker
    graph = {}

    def body(rt):
        a, b = ksync.SpinLock("A"), ksync.RwLock("B")
        with a, b.read():
            pass
        with ksync.rcu, a:
            pass
        ld = get_checker(rt, "lockdep")
        graph["dot"], graph["json"] = ld.to_dot(), ld.to_json()
        graph["deps"] = ld.dependencies()
    run(body, "controlled", 0, LOCKDEP)
    assert graph["dot"].startswith("digraph lockdep {")
    assert '"A" -> "B" [label="EN"];' in graph["dot"]
    assert '"rcu_read_lock" -> "A" [label="SN"];' in graph["dot"]
    import json
    doc = json.loads(graph["json"])
    assert {c["name"] for c in doc["classes"]} == {"A", "B", "rcu_read_lock"}
    dep = next(d for d in doc["dependencies"] if d["from"] == "A")
    assert dep["to"] == "B" and dep["kinds"] == ["EN"]
    assert dep["first_seen"]["EN"]["thread"] == "main"
    assert "test_lockdep.py" in dep["first_seen"]["EN"]["stack"][0]
    assert graph["deps"] == [("A", "B", "EN"), ("rcu_read_lock", "A", "SN")]


@pytest.mark.parametrize("mode", MODES)
def test_report_has_a_machine_readable_form(mode):
    rt = run(_abba_sequential, mode, 0, LOCKDEP)
    d = rt.reports[0].to_dict()
    assert d["kind"] == "circular-locking-dependency" and d["thread"] == "main"
    assert d["chain"] == ["A", "B"]
    assert [(x["from"], x["to"]) for x in d["dependencies"]] == [("A", "B"), ("B", "A")]
    assert all(x["stack"] for x in d["dependencies"])


def test_lockdep_off_costs_no_report():
    rt = run(_abba_sequential, "controlled", 0, ("races",))
    assert rt.reports == []
