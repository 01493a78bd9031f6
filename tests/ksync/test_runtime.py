"""Runtime: managed threads, results and failures, modes, deadlocks, determinism."""

from __future__ import annotations

import threading

import pytest

import ksync
from ksync import KsyncError, Runtime, SpinLock

from .helpers import MODES, Recorder, kinds, run


@pytest.mark.parametrize("mode", MODES)
def test_spawn_join_returns_result(mode):
    def body(rt):
        ts = [rt.spawn(lambda i=i: i * i, name=f"vcpu-{i}") for i in range(4)]
        return [t.join() for t in ts], [t.name for t in ts]

    _, (results, names) = run(body, mode)
    assert results == [0, 1, 4, 9]
    assert names == ["vcpu-0", "vcpu-1", "vcpu-2", "vcpu-3"]


@pytest.mark.parametrize("mode", MODES)
def test_thread_exception_propagates_with_thread_name_on_join(mode):
    def boom():
        raise ValueError("bad gfn")

    def body(rt):
        t = rt.spawn(boom, name="vcpu-7")
        with pytest.raises(ksync.ThreadFailed, match="vcpu-7.*bad gfn") as ei:
            t.join()
        assert isinstance(ei.value.exc, ValueError)

    run(body, mode)


@pytest.mark.parametrize("mode", MODES)
def test_unjoined_thread_exception_is_raised_at_exit(mode):
    with pytest.raises(ksync.ThreadFailed, match="kworker/u4:1"):
        with Runtime(mode=mode, checks=()) as rt:
            rt.spawn(lambda: 1 / 0, name="kworker/u4:1")


def test_current_runtime_is_the_entered_one_on_every_managed_thread():
    def body(rt):
        assert ksync.current_runtime() is rt
        return rt.spawn(ksync.current_runtime).join()

    rt, seen = run(body)
    assert seen is rt


def test_primitives_outside_a_runtime_name_the_thread_and_the_fix():
    with pytest.raises(ksync.NoRuntimeError, match="not managed by a ksync.Runtime"):
        SpinLock("x").lock()


def test_runtimes_do_not_nest_and_enter_once():
    rt = Runtime(checks=())
    with rt:
        with pytest.raises(KsyncError, match="do not nest"):
            Runtime(checks=()).__enter__()
    with pytest.raises(KsyncError, match="only once"):
        rt.__enter__()


@pytest.mark.parametrize("bad", [{"mode": "fast"}, {"noise": 2.0}, {"checks": ("lockdepp",)},
                                 {"mode": "controlled", "strategy": "bogus"}])
def test_bad_runtime_arguments_are_clear_errors(bad):
    with pytest.raises(KsyncError):
        Runtime(**bad)


def _abba(rt):
    a, b = SpinLock("A"), SpinLock("B")

    def t1():
        with a, b:
            pass

    def t2():
        with b, a:
            pass

    rt.spawn(t1, name="t1")
    rt.spawn(t2, name="t2")


def test_abba_deadlocks_for_some_seeds_completes_for_others_and_never_hangs():
    outcomes = []
    for seed in range(40):
        before = threading.active_count()
        rt, _ = run(_abba, "controlled", seed)
        assert threading.active_count() == before
        outcomes.append(kinds(rt))
    assert ["deadlock"] in outcomes and [] in outcomes
    assert all(o in ([], ["deadlock"]) for o in outcomes)


def test_abba_in_free_mode_with_noise_is_detected_and_unwound():
    found = 0
    for seed in range(300):
        rt, _ = run(_abba, "free", seed, noise=0.5)
        found += kinds(rt) == ["deadlock"]
        assert kinds(rt) in ([], ["deadlock"])
    assert found > 0


def test_deadlock_report_names_waiters_holders_and_the_cycle():
    for seed in range(40):
        rt, _ = run(_abba, "controlled", seed)
        if rt.reports:
            break
    text = rt.reports[0].text
    assert "t1 waits for spinlock B, held by t2" in text
    assert "t2 waits for spinlock A, held by t1" in text
    assert "wait-for cycle: t1 -> t2 -> t1" in text


def test_self_deadlock_on_a_spinlock_is_reported_not_hung():
    def body(rt):
        lk = SpinLock("kvm->tdp_mmu_pages_lock")
        lk.lock()
        lk.lock()

    for mode in MODES:
        rt, _ = run(body, mode)
        assert kinds(rt) == ["deadlock"]
        assert "main waits for spinlock kvm->tdp_mmu_pages_lock, held by main" in rt.reports[0].text


def test_same_seed_gives_same_schedule_and_trace_100_times():
    def body(rt):
        lk = SpinLock("lock")
        cell = ksync.Shared("counter", 0)

        def worker():
            for _ in range(5):
                with lk:
                    cell.write(cell.read() + 1)

        for i in range(3):
            rt.spawn(worker, name=f"w{i}")

    first = None
    for _ in range(100):
        rt, _ = run(body, "controlled", 7, trace=True)
        got = (rt.schedule, rt.tracer.events)
        if first is None:
            first = got
        assert got == first
    replay, _ = run(body, "controlled", 999, trace=True, schedule=first[0])
    assert (replay.schedule, replay.tracer.events) == first


def test_different_seeds_explore_different_schedules():
    def body(rt):
        for i in range(3):
            rt.spawn(lambda: [ksync.cond_resched() for _ in range(5)], name=f"w{i}")

    schedules = {run(body, "controlled", s)[0].schedule for s in range(10)}
    assert len(schedules) > 5


def test_replaying_a_schedule_that_does_not_fit_names_the_step():
    def body(rt):
        rt.spawn(lambda: None, name="w")

    with pytest.raises(ksync.ReplayDivergence, match="decision 0"):
        run(body, "controlled", schedule="5x3")


def test_max_steps_turns_a_livelock_into_a_report():
    def body(rt):
        flag = ksync.Atomic(0, "flag")

        def spinner():
            while flag.read() == 0:   # nobody ever sets it
                pass

        rt.spawn(spinner, name="spinner")

    rt, _ = run(body, "controlled", max_steps=500)
    assert kinds(rt) == ["hung-task"]
    assert "spinner" in rt.reports[0].text


def test_virtual_time_advances_only_through_sleeps_and_steps():
    def body(rt):
        order = []

        def sleeper(ms, tag):
            ksync.msleep(ms)
            order.append((tag, rt.now_ns() // 1_000_000))

        rt.spawn(sleeper, 30, "late")
        rt.spawn(sleeper, 10, "early")
        return order

    rt, order = run(body, "controlled")
    rt.threads[1].join  # noqa: B018 - threads are done after exit
    assert [tag for tag, _ in order] == ["early", "late"]
    assert order[0][1] >= 10 and order[1][1] >= 30 and rt.now_ns() < 31_000_000


def test_spine_delivers_events_to_an_attached_checker_and_the_trace():
    rec = Recorder()

    def body(rt):
        lk = SpinLock("spine-lock")
        with lk:
            pass

    rt, _ = run(body, "controlled", listeners=[rec], trace=True)
    assert ("main", "acquire", "spine-lock") in rec.seen
    assert ("main", "release", "spine-lock") in rec.seen
    assert any(e[2] == "acquired" for e in rt.tracer.events)
    assert rt.tracer.lines()[0].split()[1] == "main"


def test_strict_mode_raises_the_first_report_at_its_call_site():
    def body(rt):
        SpinLock("never-taken").unlock()

    with pytest.raises(ksync.ReportError, match="never-taken"):
        run(body, "controlled", strict=True)
