"""Carriers: OS threads kept between runs to run managed threads' bodies
(``ksync.carriers``; kernel: the kthread pool behind kthread_create).

A carrier is reused by the next start, holds nothing of the job it served
(name, ksync thread-local, CPU mask), exits after ``IDLE_S`` idle seconds
without losing a job handed over as it times out, keeps at most
``MAX_IDLE`` idle, and a forked child starts with none.
"""

from __future__ import annotations

import collections
import gc
import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable

import pytest

import ksync
from ksync import NoRuntimeError, Runtime, SpinLock, ThreadFailed, affinity, carriers

from .helpers import wait_for_child

CARRIER = "ksync-carrier"
ALLOWED = sorted(os.sched_getaffinity(0)) if affinity.supported() else []
two_cpus = pytest.mark.skipif(len(ALLOWED) < 2, reason="needs two allowed CPUs")


def _wait_until(pred: Callable[[], bool], what: str, limit: float = 10.0) -> None:
    """Poll ``pred``; a bound against hanging, not a speed requirement."""
    deadline = time.monotonic() + limit
    while not pred():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.001)


def _idle_idents() -> list[int | None]:
    with carriers._lock:
        return [c.thread.ident for c in carriers._idle]


def _carrier_threads() -> dict[int | None, threading.Thread]:
    return {t.ident: t for t in threading.enumerate() if t.name == CARRIER and t.is_alive()}


def _thread_by_ident(ident: int | None) -> threading.Thread:
    return next(t for t in threading.enumerate() if t.ident == ident)


def _quiesce() -> None:
    """Wait until every carrier is idle or gone, so the next start pops the last one idled."""
    _wait_until(lambda: set(_carrier_threads()) == set(_idle_idents()),
                "every live carrier is on the idle list")


def _managed_run(mode: str, body: Callable[[], object], name: str = "vcpu-7",
                 **kw) -> ksync.KThread:
    with Runtime(mode=mode, checks=(), **kw) as rt:
        t = rt.spawn(body, name=name)
        t.join()
    return t


# ---------------------------------------------------------------- reuse, names, thread-local
@pytest.mark.parametrize("mode", ["free", "controlled"])
def test_the_os_thread_of_a_managed_thread_is_reused_by_the_next_run(mode):
    seen: list[tuple[int, str]] = []

    def body():
        seen.append((threading.get_ident(), threading.current_thread().name))

    _quiesce()
    t1 = _managed_run(mode, body, name="vcpu-1")
    _wait_until(lambda: seen[0][0] in _idle_idents(), "run 1's carrier is idle")
    assert _thread_by_ident(seen[0][0]).name == CARRIER
    t2 = _managed_run(mode, body, name="vcpu-2")
    assert seen[1][0] == seen[0][0]
    assert t1.os_thread.ident == t2.os_thread.ident == seen[0][0]
    assert [n for _i, n in seen] == ["vcpu-1", "vcpu-2"]


def test_a_carrier_is_named_after_its_job_while_running_and_ksync_carrier_when_idle():
    running, release = threading.Event(), threading.Event()

    def job():
        running.set()
        release.wait(30)

    h = carriers.start(job, "tdp_mmu_zap_wq/3")
    running.wait(30)
    th = _thread_by_ident(h.ident)
    assert th.name == "tdp_mmu_zap_wq/3"
    release.set()
    assert h.join(timeout=30)
    assert th.name == CARRIER


def _spin_self_deadlock():
    lk = SpinLock("kvm->mmu_lock")
    lk.lock()
    lk.lock()


@pytest.mark.parametrize("mode", ["free", "controlled"])
@pytest.mark.parametrize("ending", ["returns", "raises", "aborted"])
def test_a_plain_job_after_a_managed_thread_on_the_same_carrier_is_not_managed(mode, ending):
    where: list[int] = []

    def body():
        where.append(threading.get_ident())
        assert ksync.current_thread().name == "vcpu-0"
        if ending == "raises":
            raise ValueError("bad gfn")
        if ending == "aborted":
            _spin_self_deadlock()

    _quiesce()
    with Runtime(mode=mode, checks=()) as rt:
        t = rt.spawn(body, name="vcpu-0")
        if ending == "raises":
            with pytest.raises(ThreadFailed):
                t.join()
        elif ending == "returns":
            t.join()
    assert [r.kind for r in rt.reports] == (["deadlock"] if ending == "aborted" else [])
    _wait_until(lambda: where[0] in _idle_idents(), "the managed thread's carrier is idle")

    got: list[object] = []

    def plain():
        got.append(threading.get_ident())
        try:
            got.append(ksync.current_thread())
        except NoRuntimeError as e:
            got.append(e)

    assert carriers.start(plain, "plain").join(timeout=30)
    assert got[0] == where[0]           # the same OS thread served both
    assert isinstance(got[1], NoRuntimeError), got[1]


@pytest.mark.parametrize("checks", [(), None])
def test_an_idle_carrier_keeps_nothing_of_the_run_it_served_alive(checks):
    # A campaign leaves up to MAX_IDLE idle carriers: none may pin a finished
    # Runtime (its threads, trace and reports) in memory, nor may a checker's
    # per-thread cache (the saved-stack tail holds frames of the run).
    where: list[int] = []

    def one_run() -> weakref.ref:
        with Runtime(mode="controlled", checks=checks) as rt:
            cell = ksync.Shared("cell", 0)

            def vcpu() -> None:
                where.append(threading.get_ident())
                cell.write(1)       # the race detector saves this stack on the carrier
            rt.spawn(vcpu, name="vcpu-0").join()
        return weakref.ref(rt)

    ref = one_run()
    _wait_until(lambda: where[0] in _idle_idents(), "the run's carrier is idle")
    gc.collect()
    assert ref() is None, [type(r).__name__ for r in gc.get_referrers(ref())]


# ---------------------------------------------------------------- handles
def test_join_with_timeout_is_false_while_the_body_runs_and_true_after():
    release = threading.Event()
    ran: list[int] = []

    def job():
        release.wait(30)
        ran.append(threading.get_ident())

    h = carriers.start(job, "slow")
    assert h.join(timeout=0.01) is False
    assert h.is_alive()
    release.set()
    assert h.join(timeout=30) is True
    assert not h.is_alive()
    assert h.join() is True and h.join(timeout=0) is True     # joining again never blocks
    assert h.ident == ran[0]


def test_jobs_running_at_once_each_get_their_own_carrier():
    n = 8
    barrier = threading.Barrier(n + 1, timeout=30)
    idents: list[int] = []

    def job():
        idents.append(threading.get_ident())
        barrier.wait()       # breaks (and the test fails) if two jobs shared a carrier

    handles = [carriers.start(job, f"vcpu-{i}") for i in range(n)]
    barrier.wait()
    assert all(h.join(timeout=30) for h in handles)
    assert len(set(idents)) == n


def test_many_concurrent_starts_from_plain_threads_each_run_exactly_once():
    per, spawners = 10, 5
    runs: collections.Counter[str] = collections.Counter()
    wrong_name: list[str] = []
    lock = threading.Lock()
    handles: list[carriers.Carried] = []
    go = threading.Barrier(spawners, timeout=30)

    def job(name: str) -> Callable[[], None]:
        def fn():
            if threading.current_thread().name != name:
                wrong_name.append(name)
            with lock:
                runs[name] += 1
        return fn

    def spawner(s: int):
        go.wait()
        mine = [carriers.start(job(f"j{s}-{i}"), f"j{s}-{i}") for i in range(per)]
        with lock:
            handles.extend(mine)

    ths = [threading.Thread(target=spawner, args=(s,), name=f"spawner-{s}")
           for s in range(spawners)]
    for th in ths:
        th.start()
    for th in ths:
        th.join(timeout=30)
    assert len(handles) == per * spawners
    assert all(h.join(timeout=30) for h in handles)
    assert runs == {f"j{s}-{i}": 1 for s in range(spawners) for i in range(per)}
    assert wrong_name == []


# ---------------------------------------------------------------- CPU mask
@two_cpus
def test_a_free_run_after_a_pinned_controlled_run_does_not_inherit_the_pin():
    main_mask = os.sched_getaffinity(0)
    seen: list[tuple[int, set[int]]] = []

    def body():
        seen.append((threading.get_ident(), os.sched_getaffinity(0)))

    _quiesce()
    _managed_run("controlled", body, pin=ALLOWED[-1])
    _wait_until(lambda: seen[0][0] in _idle_idents(), "the pinned run's carrier is idle")
    _managed_run("free", body)
    assert seen[1][0] == seen[0][0]     # the same carrier, so its mask was reset
    assert [m for _i, m in seen] == [{ALLOWED[-1]}, main_mask]


@two_cpus
def test_a_reused_carrier_takes_each_controlled_run_s_cpu():
    seen: list[tuple[int, set[int]]] = []

    def body():
        seen.append((threading.get_ident(), os.sched_getaffinity(0)))

    _quiesce()
    for cpu in (ALLOWED[0], ALLOWED[1], ALLOWED[0]):
        _managed_run("controlled", body, pin=cpu)
        _wait_until(lambda: seen[-1][0] in _idle_idents(), "the run's carrier is idle")
    assert len({i for i, _m in seen}) == 1
    assert [m for _i, m in seen] == [{ALLOWED[0]}, {ALLOWED[1]}, {ALLOWED[0]}]


# ---------------------------------------------------------------- idle-out and the cap
def test_an_idle_carrier_exits_after_idle_s_and_leaves_the_idle_list(monkeypatch):
    monkeypatch.setattr(carriers, "IDLE_S", 0.01)
    me: list[threading.Thread] = []
    h = carriers.start(lambda: me.append(threading.current_thread()), "short")
    assert h.join(timeout=30)
    me[0].join(timeout=30)
    assert not me[0].is_alive()
    assert h.ident not in _idle_idents()


def _spin(seconds: float) -> None:
    """Busy-wait holding the GIL (a sleep would let the carrier run)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


@pytest.mark.timeout(60)
def test_a_start_racing_with_idle_out_still_runs_its_job(monkeypatch):
    ran: list[int] = []
    # IDLE_S = 0: the carrier popped next may be just failing its wait.
    monkeypatch.setattr(carriers, "IDLE_S", 0.0)
    for i in range(150):
        h = carriers.start(lambda i=i: ran.append(i), f"race-{i}")
        assert h.join(timeout=30), f"job {i} lost (IDLE_S=0)"
    # Spinning past IDLE_S with a long switch interval keeps the GIL here,
    # so the idle carrier's wait times out but it cannot yet look for a job:
    # the next start pops it and hands the job over in exactly that window.
    monkeypatch.setattr(carriers, "IDLE_S", 0.0001)
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.05)
    try:
        for i in range(150, 450):
            h = carriers.start(lambda i=i: ran.append(i), f"race-{i}")
            assert h.join(timeout=30), f"job {i} lost (IDLE_S=0.0001)"
            _spin(0.0005)
    finally:
        sys.setswitchinterval(old)
    assert ran == list(range(450))


@pytest.mark.timeout(60)
def test_starts_from_two_threads_racing_with_idle_out_all_run_once(monkeypatch):
    monkeypatch.setattr(carriers, "IDLE_S", 0.0)
    runs: collections.Counter[tuple[int, int]] = collections.Counter()
    lost: list[tuple[int, int]] = []
    lock = threading.Lock()

    def job(key):
        def fn():
            with lock:
                runs[key] += 1
        return fn

    def spawner(s: int):
        for i in range(100):
            if not carriers.start(job((s, i)), f"race-{s}-{i}").join(timeout=30):
                lost.append((s, i))
                return

    ths = [threading.Thread(target=spawner, args=(s,), name=f"spawner-{s}") for s in range(2)]
    for th in ths:
        th.start()
    for th in ths:
        th.join(timeout=60)
    assert lost == []
    assert runs == {(s, i): 1 for s in range(2) for i in range(100)}


def test_max_idle_caps_the_idle_list(monkeypatch):
    monkeypatch.setattr(carriers, "MAX_IDLE", 2)
    _quiesce()
    # Take every idle carrier plus five new ones, so the list starts empty.
    n = carriers.idle_count() + 5
    barrier = threading.Barrier(n + 1, timeout=30)
    threads: list[threading.Thread] = []

    def job():
        threads.append(threading.current_thread())
        barrier.wait()

    handles = [carriers.start(job, f"cap-{i}") for i in range(n)]
    barrier.wait()
    assert all(h.join(timeout=30) for h in handles)
    _quiesce()
    assert carriers.idle_count() == 2
    assert sum(t.is_alive() for t in threads) == 2


# ---------------------------------------------------------------- fork
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.timeout(60)
def test_a_forked_child_starts_with_no_idle_carriers_and_can_start_jobs():
    assert carriers.start(lambda: None, "before-fork").join(timeout=30)
    _wait_until(lambda: carriers.idle_count() > 0, "a carrier is idle in the parent")
    # Fork while holding the carriers' lock: the child must not inherit it held.
    held = carriers._lock
    held.acquire()
    pid = os.fork()
    if pid != 0:
        held.release()
    else:
        code = 99
        try:
            signal.alarm(20)        # the child dies rather than hang the test
            if carriers.idle_count() != 0:
                code = 3
            else:
                box: list[int] = []
                ok = carriers.start(lambda: box.append(7), "in-child").join(timeout=10)
                code = 0 if ok and box == [7] else 4
        finally:
            os._exit(code)
    assert wait_for_child(pid, 40) == 0, (
        "3: the child inherited idle carriers; 4: a start in the child did not run; "
        "negative: killed by a signal (hung)")
    assert carriers.idle_count() > 0      # the parent's list is untouched
