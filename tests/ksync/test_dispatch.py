"""The spine's per-kind dispatch: a listener with ``kinds`` hears only those, in order."""

from __future__ import annotations

from typing import Any

import ksync
from ksync import SpinLock
from ksync.checkers.atomic_sleep import AtomicSleep
from ksync.checkers.hung import HungTask
from ksync.checkers.lockdep import Lockdep
from ksync.checkers.races import RaceDetector
from ksync.checkers.uaf import UseAfterFree

from .helpers import Recorder, run


class Picky(Recorder):
    name = "picky"
    kinds = frozenset((ksync.events.RELEASE, "custom-kind-nobody-else-names"))


def test_a_listener_with_kinds_hears_only_those_and_one_without_hears_everything():
    every, picky = Recorder(), Picky()

    def body(rt):
        with SpinLock("dispatch-lock"):
            pass
        rt.emit(ksync.current_thread(), "custom-kind-nobody-else-names", rt, None)
        rt.emit(ksync.current_thread(), "a-kind-no-table-names", rt, None)

    run(body, "controlled", listeners=[every, picky])
    assert {k for _t, k, _o in picky.seen} == {"release", "custom-kind-nobody-else-names"}
    heard = [k for _t, k, _o in every.seen]
    assert {"acquire", "acquired", "release", "custom-kind-nobody-else-names",
            "a-kind-no-table-names"} <= set(heard)


def test_listeners_of_one_kind_are_called_in_attach_order():
    order: list[str] = []

    class Tag(ksync.Checker):
        def __init__(self, tag: str, kinds: Any) -> None:
            self.tag = tag
            if kinds is not None:
                self.kinds = kinds

        def on_event(self, t, kind, obj, arg):
            if kind == "release":
                order.append(self.tag)

    def body(rt):
        with SpinLock("order-lock"):
            pass

    run(body, "controlled",
        listeners=[Tag("a", None), Tag("b", frozenset({"release"})), Tag("c", None)])
    assert order == ["a", "b", "c"]


def test_each_checker_declares_every_kind_its_on_event_acts_on():
    # A kind left out of ``kinds`` would silently blind the checker: the
    # declared set must cover what on_event dispatches on.
    ev = ksync.events
    assert RaceDetector.kinds == frozenset(RaceDetector()._handlers)
    assert Lockdep.kinds == {ev.ACQUIRE, ev.RELEASE, ev.FREE, ev.ALLOC}
    assert {ev.ACCESS, ev.READ, ev.WRITE, ev.ATOMIC, ev.REFCOUNT, ev.ACQUIRE, ev.ALLOC,
            ev.FREE} == UseAfterFree.kinds
    assert AtomicSleep.kinds == {ev.MIGHT_SLEEP}
    assert HungTask.kinds == frozenset()
