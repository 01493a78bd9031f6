"""Review of the campaign-throughput changes (carriers, the eventfd baton,
one khungtaskd, stackless runs, per-kind dispatch): behaviour each of them
must keep, pinned where a review found it broken.
"""

from __future__ import annotations

import contextvars
import decimal
import os
import signal
import threading
import time

import pytest

import ksync
from ksync import Runtime, affinity, carriers
from ksync import events as ev
from ksync.checkers import _stacks, get_checker, hung

from .helpers import wait_for_child

pytestmark = pytest.mark.timeout(30)



# ---------------------------------------------------------------- affinity
@pytest.mark.skipif(not affinity.supported(), reason="no CPU affinity here")
@pytest.mark.parametrize("raw", ["bogus", "off", "4096"])
def test_pin_true_is_auto_whatever_ksync_pin_says(raw, monkeypatch):
    # ksync.affinity: "True is auto whatever the environment says".
    monkeypatch.setenv("KSYNC_PIN", raw)
    assert affinity.choose_cpu(True) in os.sched_getaffinity(0)
    assert Runtime(mode="controlled", pin=True).cpu in os.sched_getaffinity(0)

# ---------------------------------------------------------------- carriers
_CV = contextvars.ContextVar("review_cv", default="fresh")


@pytest.mark.parametrize("mode", ["free", "controlled"])
def test_a_managed_thread_starts_with_fresh_context_variables_on_a_reused_carrier(mode):
    # A new OS thread starts with an empty contextvars context (and so the
    # default decimal context); a reused carrier must not hand the last
    # run's values to the next one, or a run depends on which carrier it got.
    seen: list[tuple[str, int]] = []

    def body():
        seen.append((_CV.get(), decimal.getcontext().prec))
        _CV.set("left by an earlier run")
        decimal.getcontext().prec = 5

    for _ in range(3):
        with Runtime(mode=mode, checks=()) as rt:
            rt.spawn(body).join()
    default_prec = decimal.Context().prec
    assert seen == [("fresh", default_prec)] * 3



class _NoSetAffinity:
    """``os`` for ksync.carriers, where changing a thread's CPU mask fails (a
    cpuset shrunk under the process: EINVAL)."""

    def __getattr__(self, name: str) -> object:
        return getattr(os, name)

    @staticmethod
    def sched_setaffinity(pid: int, mask: object) -> None:
        raise OSError(22, "Invalid argument")


def _wait_until(pred, what: str) -> None:
    deadline = time.monotonic() + 10
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.001)


@pytest.mark.skipif(not affinity.supported() or len(os.sched_getaffinity(0)) < 2,
                    reason="needs two allowed CPUs")
def test_a_carrier_that_cannot_take_the_spawner_s_mask_still_runs_its_job(monkeypatch):
    # Runtime exit keeps a pin it cannot undo (affinity.restore); a carrier
    # must do likewise, or the job never runs and its run waits forever.
    cpu = max(os.sched_getaffinity(0))
    ran: list[int] = []

    def pinned_spawner():
        os.sched_setaffinity(0, {cpu})
        carriers.start(lambda: ran.append(threading.get_ident()), "pinned").join(timeout=10)

    th = threading.Thread(target=pinned_spawner)
    th.start()
    th.join(timeout=10)
    _wait_until(lambda: carriers._idle and carriers._idle[-1].thread.ident == ran[0],
                "the pinned carrier is the next to be reused")
    monkeypatch.setattr(carriers, "os", _NoSetAffinity())
    h = carriers.start(lambda: ran.append(threading.get_ident()), "unpinnable")
    assert h.join(timeout=10), "the job never ran"
    assert ran[1] == ran[0]


# ---------------------------------------------------------------- the baton's eventfds
def _abba(rt: Runtime) -> None:
    a, b = ksync.Mutex("a"), ksync.Mutex("b")

    def ab():
        with a, b:
            pass

    def ba():
        with b, a:
            pass
    for t in [rt.spawn(ab), rt.spawn(ba)]:
        t.join()


def _self_deadlock(rt: Runtime) -> None:
    m = ksync.Mutex("m")
    m.lock()
    m.lock()


def _thread_raises(rt: Runtime) -> None:
    def boom():
        raise ValueError("boom")
    rt.spawn(boom)
    rt.spawn(lambda: None)


def _main_raises(rt: Runtime) -> None:
    rt.spawn(lambda: None)
    raise ValueError("main")


def _livelock(rt: Runtime) -> None:
    def spin():
        while True:
            ksync.cond_resched()
    rt.spawn(spin)
    rt.spawn(spin)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_no_descriptor_outlives_a_run_however_it_ends():
    # One eventfd per controlled thread: closed by the thread as it ends, and
    # main's at exit, for clean, deadlocked, failed, livelocked and diverged runs.
    bodies = [_abba, _self_deadlock, _thread_raises, _main_raises, _livelock]
    before = len(os.listdir("/proc/self/fd"))
    for seed in range(6):
        for body in bodies:
            for strict in (False, True):
                try:
                    with Runtime(mode="controlled", seed=seed, strict=strict,
                                 max_steps=200, stacks=bool(seed % 2)) as rt:
                        body(rt)
                except (ValueError, ksync.ThreadFailed, ksync.ReportError):
                    pass
        with pytest.raises(ksync.ReplayDivergence):
            with Runtime(mode="controlled", schedule=rt.schedule + ".0.1.0") as rt2:
                _abba(rt2)
    assert len(os.listdir("/proc/self/fd")) == before

# ---------------------------------------------------------------- stack skip depths
class _Obj:
    pass


class _Child:
    """What SPAWN names: a thread the checker has not seen."""

    tid = 97


def _saved(rt: Runtime, kind: str, obj: object) -> tuple:
    """The stack the checkers saved for the ``kind`` event on ``obj``."""
    races, uaf = get_checker(rt, "races"), get_checker(rt, "uaf")
    if kind == ev.ACCESS:
        return races._objs[id(obj)].cells["f"].w_stack
    if kind == ev.WRITE:
        return races._objs[id(obj)].cells[None].w_stack
    if kind == ev.SPAWN:
        return races._created[obj.tid][1]
    if kind == ev.ALLOC:
        return uaf._live[id(obj)].stack
    if kind == ev.FREE:
        return uaf._freed[id(obj)].fstack
    assert kind == ev.ACQUIRE
    return get_checker(rt, "lockdep").held_sites(ksync.current_thread())[-1][1]


_EVENTS = {
    ev.ACCESS: (_Obj, ("write", "f")), ev.WRITE: (lambda: ksync.Shared("cell", 0), None),
    ev.SPAWN: (_Child, None), ev.ALLOC: (_Obj, "obj"),
    ev.FREE: (lambda: ksync.track(_Obj(), "obj"), "obj"),
    ev.ACQUIRE: (lambda: ksync.Mutex("m"), ev.EXCLUSIVE),
}


def _emit_directly(rt: Runtime, kind: str, obj: object, arg: object) -> None:
    rt.emit(ksync.current_thread(), kind, obj, arg)


def _call_on_event(rt: Runtime, kind: str, obj: object, arg: object) -> None:
    name = {ev.ALLOC: "uaf", ev.FREE: "uaf", ev.ACQUIRE: "lockdep"}.get(kind, "races")
    get_checker(rt, name).on_event(ksync.current_thread(), kind, obj, arg)


@pytest.mark.parametrize("kind", sorted(_EVENTS))
@pytest.mark.parametrize("via", [_emit_directly, _call_on_event])
@pytest.mark.parametrize("mode", ["free", "controlled"])
def test_a_saved_stack_starts_at_the_code_that_emitted_the_event_directly(kind, via, mode):
    make, arg = _EVENTS[kind]
    with Runtime(mode=mode) as rt:
        obj = make()
        via(rt, kind, obj, arg)
        stack = _saved(rt, kind, obj)
    assert _stacks.frames(stack)[0][2] == via.__name__


# ---------------------------------------------------------------- khungtaskd
@pytest.mark.skipif(not affinity.supported() or len(os.sched_getaffinity(0)) < 2,
                    reason="needs two allowed CPUs")
def test_khungtaskd_started_by_a_pinned_run_is_not_left_on_that_cpu(monkeypatch):
    # The watchdog serves every later runtime of the process (free mode
    # included), so it must not keep the CPU of the run that started it.
    monkeypatch.setattr(hung, "_KHUNGTASKD", hung._Khungtaskd())
    monkeypatch.delenv("KSYNC_HUNG_TIMEOUT", raising=False)
    mask = os.sched_getaffinity(0)
    with Runtime(mode="controlled", checks=("hung",), pin=min(mask)):
        thread = hung._KHUNGTASKD._thread
        assert thread is not None
    # It sets its own mask as it starts: wait for the first look to be sure.
    deadline = time.monotonic() + 10
    while os.sched_getaffinity(thread.native_id) != mask and time.monotonic() < deadline:
        time.sleep(0.01)
    assert os.sched_getaffinity(thread.native_id) == mask


class _AttachFails(ksync.Checker):
    name = "attach-fails"

    def attach(self, rt: Runtime) -> None:
        raise RuntimeError("attach failed")

    def on_event(self, t, kind, obj, arg) -> None:
        pass


@pytest.mark.parametrize("mode", ["free", "controlled"])
def test_a_runtime_that_fails_to_enter_leaves_no_checker_on_khungtaskd_s_list(mode, monkeypatch):
    # __exit__ never runs for it, so nothing else would take it off: the
    # watchdog would keep the dead runtime alive and look at it forever.
    monkeypatch.setattr(hung, "_KHUNGTASKD", hung._Khungtaskd())
    monkeypatch.delenv("KSYNC_HUNG_TIMEOUT", raising=False)
    with pytest.raises(RuntimeError, match="attach failed"):
        with Runtime(mode=mode, listeners=[_AttachFails()]):
            pass
    assert hung._KHUNGTASKD._watched == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_its_own_khungtaskd_and_it_reports_a_stall():
    # Campaign workers fork from a manager whose khungtaskd (and carriers) do
    # not exist in the child: the child must start its own, not trust the copy.
    with Runtime(mode="controlled", checks=("hung",)):
        pass
    assert hung._KHUNGTASKD._thread is not None
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            signal.alarm(20)        # the child dies rather than hang the test
            os.environ["KSYNC_HUNG_TIMEOUT"] = "0.05"
            with Runtime(mode="controlled", checks=("hung",)) as rt:
                def stall():
                    end = time.monotonic() + 0.5
                    while time.monotonic() < end:
                        pass
                rt.spawn(stall, name="staller").join()
            # (A loaded machine may add a stall of main's: only the staller's is required.)
            code = 0 if any(r.kind == "hung-task" and "staller" in r.title
                            for r in rt.reports) else 3
        finally:
            os._exit(code)
    assert wait_for_child(pid, 30) == 0, (
        "3: no stall report in the child; negative: killed by a signal (hung)")
