"""CPU affinity of controlled runs (``ksync.affinity``; kernel: sched_setaffinity(2)).

A controlled runtime pins the thread that enters it and every managed thread
to one CPU and gives the entering thread its old mask back at exit, however
the run ends; free mode and ``pin=False`` never pin; ``KSYNC_PIN`` picks the
CPU when ``pin`` is left as None.  Most checks need two allowed CPUs, so that
"pinned" and "not pinned" are different masks.
"""

from __future__ import annotations

import os
import re
import threading

import pytest

import ksync
from ksync import KsyncError, ReportError, Runtime, SpinLock, affinity

pytestmark = pytest.mark.skipif(not affinity.supported(),
                                reason="os.sched_setaffinity is missing on this platform")

ALLOWED = sorted(os.sched_getaffinity(0)) if affinity.supported() else []
two_cpus = pytest.mark.skipif(len(ALLOWED) < 2, reason="needs two allowed CPUs")


@pytest.fixture(autouse=True)
def main_mask(monkeypatch):
    """The calling thread's mask before the test; put back whatever the test did."""
    monkeypatch.delenv(affinity.ENV, raising=False)
    before = os.sched_getaffinity(0)
    yield before
    os.sched_setaffinity(0, before)


def _masks_run(mode: str = "controlled", **kw):
    """Run main plus two managed threads (one spawned by the other); return
    (rt, {thread name: (mask, cpu it ran on)}) as seen from inside each."""
    seen: dict[str, tuple[set[int], int | None]] = {}

    def look(name: str) -> None:
        seen[name] = (os.sched_getaffinity(0), affinity.current_cpu())

    def child():
        look("child")

    def parent():
        look("parent")
        ksync.current_runtime().spawn(child, name="child").join()

    with Runtime(mode=mode, checks=(), **kw) as rt:
        look("main")
        rt.spawn(parent, name="parent").join()
    return rt, seen


@two_cpus
def test_controlled_run_pins_main_and_every_managed_thread_then_restores_main(main_mask):
    rt, seen = _masks_run()
    assert rt.cpu in ALLOWED
    assert seen == {n: ({rt.cpu}, rt.cpu) for n in ("main", "parent", "child")}
    assert os.sched_getaffinity(0) == main_mask


@two_cpus
@pytest.mark.parametrize("cpu", ALLOWED[:2])
def test_pin_int_pins_every_thread_to_that_cpu(cpu, main_mask):
    rt, seen = _masks_run(pin=cpu)
    assert rt.cpu == cpu
    assert seen == {n: ({cpu}, cpu) for n in ("main", "parent", "child")}
    assert os.sched_getaffinity(0) == main_mask


@two_cpus
def test_pin_zero_is_cpu_zero_not_off(main_mask):
    if 0 not in ALLOWED:
        pytest.skip("CPU 0 is not allowed here")
    rt, seen = _masks_run(pin=0)
    assert rt.cpu == 0 and seen["child"] == ({0}, 0)


@two_cpus
@pytest.mark.parametrize("kw", [{"mode": "free"}, {"mode": "free", "pin": ALLOWED[0]},
                                {"mode": "controlled", "pin": False}],
                         ids=["free", "free-pin-int", "controlled-pin-False"])
def test_free_mode_and_pin_false_never_pin(kw, main_mask, monkeypatch):
    monkeypatch.setenv(affinity.ENV, str(ALLOWED[0]))
    rt, seen = _masks_run(**kw)
    assert rt.cpu is None
    assert {n: m for n, (m, _cpu) in seen.items()} == dict.fromkeys(
        ("main", "parent", "child"), main_mask)
    assert os.sched_getaffinity(0) == main_mask


@two_cpus
def test_mask_restored_when_the_body_raises(main_mask):
    with pytest.raises(ValueError, match="bad gfn"):
        with Runtime(mode="controlled", checks=(), pin=ALLOWED[-1]):
            assert os.sched_getaffinity(0) == {ALLOWED[-1]}
            raise ValueError("bad gfn")
    assert os.sched_getaffinity(0) == main_mask


@two_cpus
def test_mask_restored_when_entering_fails_after_the_pin(main_mask):
    class BadListener:
        def attach(self, rt):
            raise RuntimeError("listener refuses to attach")

        def on_event(self, *a):
            pass

    with pytest.raises(RuntimeError, match="refuses to attach"):
        with Runtime(mode="controlled", checks=(), pin=ALLOWED[-1], listeners=[BadListener()]):
            pass
    assert os.sched_getaffinity(0) == main_mask


def _self_deadlock(rt: Runtime) -> None:
    lk = SpinLock("kvm->mmu_lock")

    def vcpu():
        lk.lock()
        lk.lock()

    rt.spawn(vcpu, name="vcpu-0")
    lk.lock()
    lk.unlock()


@two_cpus
def test_mask_restored_when_the_run_deadlocks_and_aborts(main_mask):
    with Runtime(mode="controlled", checks=(), pin=ALLOWED[-1]) as rt:
        _self_deadlock(rt)
    assert [r.kind for r in rt.reports] == ["deadlock"]
    assert os.sched_getaffinity(0) == main_mask


@two_cpus
def test_mask_restored_when_a_strict_run_raises_its_deadlock_at_exit(main_mask):
    with pytest.raises(ReportError) as e:
        with Runtime(mode="controlled", checks=(), pin=ALLOWED[-1], strict=True) as rt:
            _self_deadlock(rt)
    assert e.value.report.kind == "deadlock"
    assert os.sched_getaffinity(0) == main_mask


@two_cpus
def test_mask_restored_on_a_plain_thread_that_entered_the_runtime():
    out: dict[str, set[int]] = {}

    def plain():
        out["before"] = os.sched_getaffinity(0)
        with Runtime(mode="controlled", checks=(), pin=ALLOWED[0]):
            out["inside"] = os.sched_getaffinity(0)
        out["after"] = os.sched_getaffinity(0)

    th = threading.Thread(target=plain, name="plain-entry")
    th.start()
    th.join(timeout=30)
    assert out == {"before": set(ALLOWED), "inside": {ALLOWED[0]}, "after": set(ALLOWED)}


@two_cpus
@pytest.mark.parametrize("raw", ["off", "OFF", " no ", "false", "none"])
def test_ksync_pin_off_never_pins(raw, monkeypatch, main_mask):
    monkeypatch.setenv(affinity.ENV, raw)
    rt, seen = _masks_run()
    assert rt.cpu is None
    assert seen["child"][0] == main_mask


@two_cpus
def test_ksync_pin_number_pins_to_that_cpu(monkeypatch):
    for cpu in ALLOWED[:2]:
        monkeypatch.setenv(affinity.ENV, f" {cpu} ")
        rt, seen = _masks_run()
        assert rt.cpu == cpu and seen["child"] == ({cpu}, cpu)


@pytest.mark.parametrize("raw", ["", "auto", "AUTO"])
def test_ksync_pin_unset_or_auto_pins_to_an_allowed_cpu(raw, monkeypatch, main_mask):
    monkeypatch.setenv(affinity.ENV, raw)
    rt, seen = _masks_run()
    assert rt.cpu in main_mask
    assert seen["child"] == ({rt.cpu}, rt.cpu)


def test_explicit_pin_overrides_ksync_pin(monkeypatch):
    monkeypatch.setenv(affinity.ENV, "garbage")
    assert affinity.choose_cpu(ALLOWED[-1]) == ALLOWED[-1]
    assert affinity.choose_cpu(False) is None


@pytest.mark.parametrize("raw", ["garbage", "1.5", "cpu0", "-1"])
def test_bad_ksync_pin_is_a_ksync_error_naming_the_variable(raw, monkeypatch):
    monkeypatch.setenv(affinity.ENV, raw)
    with pytest.raises(KsyncError, match="^" + re.escape(f"KSYNC_PIN={raw!r}: ")):
        Runtime(mode="controlled")
    # Free mode never pins, so it never reads the variable.
    assert Runtime(mode="free").cpu is None


def test_ksync_pin_outside_the_mask_is_a_ksync_error_naming_the_variable(monkeypatch):
    cpu = max(ALLOWED) + 1
    monkeypatch.setenv(affinity.ENV, str(cpu))
    with pytest.raises(KsyncError, match=rf"^KSYNC_PIN='{cpu}': CPU {cpu} is not one"):
        Runtime(mode="controlled")


@pytest.mark.parametrize("pin", [max(ALLOWED, default=0) + 1, -1, "1", 1.0])
def test_bad_pin_argument_is_a_ksync_error_naming_runtime_pin(pin, main_mask):
    with pytest.raises(KsyncError, match="^" + re.escape(f"Runtime(pin={pin!r}): ")):
        Runtime(mode="controlled", pin=pin)
    assert os.sched_getaffinity(0) == main_mask


def test_current_cpu_is_in_the_allowed_mask():
    cpu = affinity.current_cpu()
    assert cpu is not None and cpu in os.sched_getaffinity(0)


@pytest.mark.parametrize("comm", ["a) 1 2 3 (b", "x y z )", ")"])
def test_current_cpu_reads_the_pinned_cpu_whatever_the_thread_command_name(comm):
    # The command name sits in parentheses in /proc/.../stat and may hold
    # spaces and ')'; the processor field must still be found after it.
    out: dict[int, int | None] = {}

    def plain():
        with open("/proc/thread-self/comm", "w") as f:
            f.write(comm)
        for cpu in ALLOWED[:2]:
            old = affinity.pin_calling_thread(cpu)
            assert old == set(ALLOWED)
            out[cpu] = affinity.current_cpu()
            affinity.restore(old)

    th = threading.Thread(target=plain, name="comm-test")
    th.start()
    th.join(timeout=30)
    assert out == {cpu: cpu for cpu in ALLOWED[:2]}


def test_pin_calling_thread_returns_the_old_mask_and_restore_gives_it_back(main_mask):
    old = affinity.pin_calling_thread(ALLOWED[-1])
    assert old == main_mask and os.sched_getaffinity(0) == {ALLOWED[-1]}
    affinity.restore(old)
    assert os.sched_getaffinity(0) == main_mask
