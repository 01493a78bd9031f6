"""The hung-task watchdog: free-mode blocked threads, controlled-mode stalls.

No assertion here depends on how fast the machine is: a test that expects a
report waits (boundedly) until the watchdog files it; a test that expects
silence uses waits far below the threshold or waits the watchdog skips.
"""

from __future__ import annotations

import time

import pytest

import ksync

from .util import get_checker, kinds, of_kind

HUNG = ("hung",)
_BOUND_S = 30.0         # how long a test waits for the watchdog before failing


def _await_report(rt: ksync.Runtime, kind: str = "hung-task") -> None:
    """Spin (outside ksync, so the thread stays 'running') until a report arrives."""
    deadline = time.monotonic() + _BOUND_S
    while not any(r.kind == kind for r in rt.reports):
        assert time.monotonic() < deadline, "the watchdog never reported"
        time.sleep(0.01)


def _waiter_blocked_until_reported(rt: ksync.Runtime) -> None:
    """``waiter`` blocks on a mutex ``holder`` keeps until the watchdog (0.2 s) reported."""
    get_checker(rt, "hung").timeout_s = 0.2
    lock = ksync.Mutex("kvm->slots_lock")
    taken = ksync.Completion("taken")

    def holder():
        with lock:
            taken.complete()
            _await_report(rt)          # holds the mutex until the watchdog spoke

    def waiter():
        taken.wait()
        with lock:
            pass
    h = rt.spawn(holder, name="holder")
    w = rt.spawn(waiter, name="waiter")
    h.join()
    w.join()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("seed", range(3))
def test_a_thread_blocked_on_a_lock_past_the_threshold_is_reported_with_every_stack(seed):
    with ksync.Runtime(mode="free", seed=seed, checks=HUNG) as rt:
        _waiter_blocked_until_reported(rt)
    # Only the waiter is reported (on a loaded machine main's short join of the
    # waiter after the holder let go might be too; that is not what this pins).
    (r,) = [r for r in of_kind(rt, "hung-task") if r.thread == "waiter"]
    assert set(kinds(rt)) == {"hung-task"}
    for piece in ("INFO: task waiter:2 blocked for more than 0.2 seconds.",
                  "on mutex kvm->slots_lock, held by holder/1",
                  '"KSYNC_HUNG_TIMEOUT=0" disables this message.',
                  "task:waiter", "state:D", "Call Trace:",
                  "Showing all locks held in the system:",
                  "1 lock held by holder/1:", " #0: (kvm->slots_lock){write}",
                  "Showing all tasks:", "task:main", "task:holder", "task:waiter",
                  "test_hung.py"):
        assert piece in r.text, piece
    assert r.data["holders"] == ["holder"] and r.data["waited_s"] >= 0.2
    assert any(ln.endswith(" waiter") for ln in r.data["stack"])


@pytest.mark.timeout(60)
def test_a_thread_waiting_for_a_completion_is_reported_once_per_wait():
    with ksync.Runtime(mode="free", checks=HUNG) as rt:
        get_checker(rt, "hung").timeout_s = 0.1
        never = ksync.Completion("never")

        def waiter():
            never.wait()
        w = rt.spawn(waiter, name="waiter")
        _await_report(rt)
        time.sleep(0.3)                    # more polls of the same wait: no new report
        never.complete()
        w.join()
    (r,) = [r for r in rt.reports if r.thread == "waiter"]
    assert set(kinds(rt)) == {"hung-task"}
    assert "waiting" in r.text and "completion never" in r.text


@pytest.mark.timeout(60)
@pytest.mark.parametrize("seed", range(5))
def test_short_lock_waits_are_silent(seed):
    with ksync.Runtime(mode="free", seed=seed, checks=HUNG, noise=0.3) as rt:
        lock = ksync.SpinLock("L")
        cell = ksync.Shared("cell", 0)

        def worker():
            for _ in range(50):
                with lock:
                    cell.write(cell.read() + 1)
        for t in [rt.spawn(worker, name=f"w{i}") for i in range(3)]:
            t.join()
    assert rt.reports == []


@pytest.mark.timeout(60)
def test_joining_a_thread_that_runs_past_the_threshold_is_progress_not_a_hang():
    with ksync.Runtime(mode="free", checks=HUNG) as rt:
        get_checker(rt, "hung").timeout_s = 0.2

        def busy():
            end = time.monotonic() + 0.6       # runs (never blocks) past the threshold
            while time.monotonic() < end:
                time.sleep(0.01)
        rt.spawn(busy, name="busy").join()
    assert rt.reports == []


@pytest.mark.timeout(60)
def test_controlled_mode_reports_a_thread_that_never_reaches_a_scheduling_point():
    with ksync.Runtime(mode="controlled", checks=HUNG) as rt:
        get_checker(rt, "hung").timeout_s = 0.2

        def spinner():
            _await_report(rt)                  # pure Python: no scheduling point
        rt.spawn(spinner, name="spinner").join()
    r = [r for r in of_kind(rt, "hung-task") if r.thread == "spinner"][0]
    assert "ran for more than 0.2 seconds without reaching a scheduling point" in r.text
    assert "Showing all tasks:" in r.text and "_await_report" in r.text
    assert any(ln.endswith(" spinner") for ln in r.data["stack"])


@pytest.mark.parametrize("seed", range(10))
def test_controlled_mode_leaves_a_stuck_run_to_the_deadlock_detector(seed):
    with ksync.Runtime(mode="controlled", seed=seed, checks=HUNG) as rt:
        never = ksync.Completion("never")
        rt.spawn(never.wait, name="waiter")
    assert kinds(rt) == ["deadlock"]


@pytest.mark.parametrize("seed", range(10))
def test_a_clean_controlled_run_is_silent(seed):
    with ksync.Runtime(mode="controlled", seed=seed, checks=HUNG) as rt:
        lock = ksync.Mutex("M")

        def worker():
            for _ in range(5):
                with lock:
                    ksync.msleep(1)
        for t in [rt.spawn(worker) for _ in range(3)]:
            t.join()
    assert rt.reports == []


def test_the_threshold_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("KSYNC_HUNG_TIMEOUT", "0.25")
    with ksync.Runtime(mode="free", checks=HUNG) as rt:
        assert get_checker(rt, "hung").timeout_s == 0.25
    monkeypatch.setenv("KSYNC_HUNG_TIMEOUT", "0")
    with ksync.Runtime(mode="free", checks=HUNG) as rt:
        hung = get_checker(rt, "hung")
        assert hung.timeout_s == 0 and not hung.watched


@pytest.mark.timeout(60)
def test_a_parked_khungtaskd_wakes_for_the_next_runtime(monkeypatch):
    from ksync.checkers import hung as hung_mod
    monkeypatch.setattr(hung_mod, "PARK_AFTER_S", 0.0)
    with ksync.Runtime(mode="free", checks=HUNG):
        pass
    deadline = time.monotonic() + _BOUND_S
    while not hung_mod._KHUNGTASKD._parked:      # nothing to watch: it parks
        assert time.monotonic() < deadline, "khungtaskd never parked"
        time.sleep(0.01)
    with ksync.Runtime(mode="free", checks=HUNG) as rt:
        _waiter_blocked_until_reported(rt)
    assert any(r.thread == "waiter" for r in of_kind(rt, "hung-task"))


def _stall_looks(monkeypatch, delay_per_look: float) -> list[float]:
    """Twenty looks, 0.1 s apart, at a controlled run stuck at one step; the running
    thread waits ``delay_per_look`` s for a CPU between two looks."""
    from types import SimpleNamespace

    from ksync.checkers import hung
    delays = iter(i * delay_per_look for i in range(100))
    monkeypatch.setattr(hung, "run_delay_s", lambda ident: next(delays))
    c = hung.HungTask()
    c.rt = SimpleNamespace(controlled=True, step=7, _current=None)
    c.timeout_s = 0.45
    stalls: list[float] = []
    monkeypatch.setattr(c, "_report_stall", stalls.append)
    for i in range(20):
        c.look(100.0 + i * 0.1)
    return stalls


def test_a_controlled_stall_counts_wall_time_the_thread_could_run(monkeypatch):
    stalls = _stall_looks(monkeypatch, 0.0)
    assert len(stalls) == 1 and 0.45 <= stalls[0] < 0.55


def test_time_the_running_thread_waited_for_a_cpu_is_not_a_stall(monkeypatch):
    # A machine loaded past its cores: the thread was runnable, never stuck.
    assert _stall_looks(monkeypatch, 0.1) == []
    # Half the time waiting: reported later, after 0.45 s of its own (0.9 s of wall).
    half = _stall_looks(monkeypatch, 0.05)
    assert len(half) == 1 and 0.45 <= half[0] < 0.55
