"""ksync.events.TraceRecorder: times beside events, reports where they fired, state probes."""

from __future__ import annotations

import pytest

import ksync
from ksync import events as ev


class Box:
    """A user object whose ``value`` a probe watches."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.value = 0


def box_probe(box: Box) -> dict[str, str]:
    return {"value": str(box.value)}


@pytest.mark.timeout(30)
def test_times_run_beside_events_and_follow_the_virtual_clock():
    with ksync.Runtime(mode="controlled", seed=2, trace=True) as rt:
        lock = ksync.SpinLock("L")

        def worker():
            with lock:
                ksync.msleep(1)

        for t in [rt.spawn(worker, name=f"w{i}") for i in range(2)]:
            rt.join(t)
    tr = rt.tracer
    assert len(tr.times) == len(tr.events) > 0
    assert tr.times == sorted(tr.times)
    # The sleep advanced virtual time by a millisecond beyond one tick per step.
    assert tr.times[-1] >= 1_000_000 > tr.events[-1][0] * 1000


@pytest.mark.timeout(30)
def test_a_report_is_recorded_at_the_event_that_filed_it():
    with ksync.Runtime(mode="controlled", seed=0, trace=True) as rt:
        a, b = ksync.SpinLock("A"), ksync.SpinLock("B")
        with a, b:
            pass
        with b, a:                  # lockdep closes the cycle when A is acquired here
            pass
    reps = [e for e in rt.tracer.events if e[2] == ev.REPORT]
    assert [(e[1], e[3]) for e in reps] == [("main", "circular-locking-dependency")]
    i = rt.tracer.events.index(reps[0])
    assert rt.tracer.events[i - 1][2:4] == (ev.ACQUIRE, "A")


@pytest.mark.timeout(30)
def test_a_registered_probe_records_each_change_once_and_only_changes():
    ev.register_state_probe(Box, box_probe)
    ev.register_state_probe(Box, box_probe)        # idempotent
    with ksync.Runtime(mode="controlled", seed=0, trace=True) as rt:
        box = ksync.track(Box("box"))
        a = ksync.Atomic(0, "a")
        box.value = 5
        a.add_return(1)
        a.add_return(1)             # no change to the box: nothing recorded
        box.value = 6
        ksync.kfree(box)
        box.value = 7               # freed: no longer watched
        a.add_return(1)
    states = [(e[1], e[3], e[4]) for e in rt.tracer.events if e[2] == ev.STATE]
    assert states == [("main", "box.value", "5"), ("main", "box.value", "6")]


def test_register_state_probe_rejects_what_is_not_a_class_and_a_callable():
    with pytest.raises(TypeError, match="a class and a callable"):
        ev.register_state_probe("Box", box_probe)


@pytest.mark.timeout(60)
def test_a_state_change_is_credited_to_the_thread_that_made_it(clean_run):
    # invalidate_all_roots runs on main under mmu_lock for write; the flag
    # flips just before a scheduling point, so another thread emits next.
    flips = [e for e in clean_run.trace if e[2] == ev.STATE and e[3].endswith(".invalid")
             and e[4] == "yes" and e[3].startswith("root#1")]
    assert [e[1] for e in flips] == ["main"]
