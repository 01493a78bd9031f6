"""Completion wake-ups and RCU grace periods, call_rcu ordering, rcu_barrier."""

from __future__ import annotations

import pytest

import ksync
from ksync import Completion, rcu

from .helpers import MODES, SEEDS, kinds, run


@pytest.mark.parametrize("mode", MODES)
def test_complete_wakes_one_waiter_per_call(mode):
    def body(rt):
        c = Completion("done")
        woke = ksync.Atomic(0, "woke")

        def waiter():
            c.wait()
            woke.inc()

        ts = [rt.spawn(waiter, name=f"w{i}") for i in range(3)]
        c.complete()
        c.complete()
        while woke.read() < 2:
            ksync.msleep(1)
        ksync.msleep(5)
        partial = woke.read()
        c.complete()
        for t in ts:
            t.join()
        return partial, woke.peek()

    assert run(body, mode)[1] == (2, 3)


@pytest.mark.parametrize("mode", MODES)
def test_complete_all_releases_present_and_future_waiters_until_reinit(mode):
    def body(rt):
        c = Completion("all")
        ts = [rt.spawn(c.wait, name=f"w{i}") for i in range(3)]
        c.complete_all()
        for t in ts:
            t.join()
        late = c.wait(timeout_ms=1)
        c.reinit()
        after = c.wait(timeout_ms=1)
        return late, after

    assert run(body, mode)[1] == (True, False)


def test_wait_timeout_in_controlled_mode_uses_virtual_time():
    def body(rt):
        t0 = rt.now_ns()
        ok = Completion("never").wait(timeout_ms=250)
        return ok, rt.now_ns() - t0

    _, (ok, waited) = run(body)
    assert ok is False and 250_000_000 <= waited < 251_000_000


def test_waiting_for_a_completion_nobody_completes_is_a_deadlock_not_a_hang():
    for mode in MODES:
        rt, _ = run(lambda rt: Completion("orphan").wait(), mode)
        assert kinds(rt) == ["deadlock"] and "completion orphan" in rt.reports[0].text


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", SEEDS)
def test_grace_period_waits_for_readers_that_started_before_it(mode, seed):
    def body(rt):
        in_section, gp_started = Completion("reader in"), ksync.Atomic(0, "gp")
        log = []

        def reader():
            with rcu:
                in_section.complete()
                for _ in range(5):
                    ksync.msleep(0.1)
                log.append(("reader out", gp_started.read()))

        def updater():
            in_section.wait()
            gp_started.set(1)
            ksync.synchronize_rcu()
            log.append(("gp done", None))

        for t in (rt.spawn(reader, name="reader"), rt.spawn(updater, name="updater")):
            t.join()
        return log

    _, log = run(body, mode, seed)
    assert [e[0] for e in log] == ["reader out", "gp done"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", SEEDS)
def test_grace_period_does_not_wait_for_readers_that_start_after_it(mode, seed):
    def body(rt):
        blocker_in, release, gp_done = Completion("in"), Completion("release"), Completion("gp")
        seen = {}

        def blocker():                  # a reader from before the grace period
            with rcu:
                blocker_in.complete_all()
                while not release.completion_done():
                    ksync.msleep(1)

        def updater():
            blocker_in.wait()
            ksync.synchronize_rcu()
            gp_done.complete()

        def late_reader():
            blocker_in.wait()
            while not (upd.blocked_on is not None and upd.wait_desc == "RCU grace period"):
                ksync.msleep(1)
            with rcu:                   # begins after the grace period did
                release.complete()
                while not gp_done.completion_done():
                    ksync.msleep(1)
                seen["gp ended inside"] = True

        ts = [rt.spawn(blocker, name="blocker")]
        upd = rt.spawn(updater, name="updater")
        ts += [upd, rt.spawn(late_reader, name="late")]
        for t in ts:
            t.join()
        return seen

    rt, seen = run(body, mode, seed)
    assert rt.reports == [] and seen == {"gp ended inside": True}


@pytest.mark.parametrize("mode", MODES)
def test_call_rcu_runs_callbacks_in_order_after_a_grace_period(mode):
    def body(rt):
        ran = []
        reader_in, reader_out = Completion("in"), ksync.Atomic(0, "out")

        def reader():
            with rcu:
                reader_in.complete()
                for _ in range(10):
                    rt.point(ksync.current_thread()) if rt.controlled else ksync.msleep(0.2)
                reader_out.set(1)

        t = rt.spawn(reader, name="reader")
        reader_in.wait()
        for i in range(5):
            ksync.call_rcu(lambda i=i: ran.append((i, reader_out.peek())))
        ksync.rcu_barrier()
        t.join()
        return ran

    _, ran = run(body, mode)
    assert [i for i, _ in ran] == [0, 1, 2, 3, 4]
    assert all(out == 1 for _, out in ran)      # none ran while the reader was inside


def test_pending_rcu_callbacks_run_before_the_runtime_exits():
    ran = []

    def body(rt):
        ksync.call_rcu(ran.append, "freed")

    run(body)
    assert ran == ["freed"]


def test_rcu_read_unlock_without_lock_is_reported():
    rt, _ = run(lambda rt: ksync.rcu_read_unlock())
    assert kinds(rt) == ["bad-unlock"]


def test_rcu_sections_nest():
    def body(rt):
        with rcu:
            with rcu:
                d = rcu.read_depth()
        return d, rcu.read_depth()

    assert run(body)[1] == (2, 0)
