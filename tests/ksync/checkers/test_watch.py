"""Plain objects seen without hand instrumentation: KASAN on every access after
``kfree``, and ThreadSanitizer on every access of a ``ksync.shared`` object."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import ksync
from ksync import watch

from .util import MODES, kinds, run

UAF = ("uaf",)
SEEDS = range(40)


class Plain:
    def __init__(self) -> None:
        self.level = 4
        self.items = [1, 2]

    def depth(self) -> int:
        return self.level


@dataclasses.dataclass
class Data:
    level: int = 4
    name: str = "data"


class Slotted:
    __slots__ = ("level", "gfn")

    def __init__(self) -> None:
        self.level = 4
        self.gfn = 0x1000


@dataclasses.dataclass(frozen=True, slots=True)
class Frozen:
    level: int = 4


class Counter:
    count = 0          # a class-level default the instance shadows on first write

    def bump(self) -> None:
        self.count += 1


FACTORIES = {"plain": Plain, "dataclass": Data, "slots": Slotted, "frozen": Frozen}
READS = {
    "read": lambda o: o.level,
    "method": lambda o: o.depth() if isinstance(o, Plain) else o.level,
    "getattr": lambda o: getattr(o, "level"),  # noqa: B009  (the builtin path)
}
WRITES = {
    "write": lambda o: setattr(o, "level", 5),
    "delete": lambda o: delattr(o, "level"),
}


def free_then(mode: str, seed: int, factory, access, name: str = "obj"):
    """Main allocates and frees; a thread spawned afterwards makes ``access``."""
    def body(rt):
        obj = ksync.track(factory(), name)
        ksync.kfree(obj)
        rt.join(rt.spawn(access, obj, name="reader"))
    return run(body, mode, seed, UAF)


def use_then_free(mode: str, seed: int, factory, access):
    """The correct twin: the thread's access happens before the free."""
    def body(rt):
        obj = ksync.track(factory(), "obj")
        rt.join(rt.spawn(access, obj, name="reader"))
        ksync.kfree(obj)
    return run(body, mode, seed, UAF)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", sorted(FACTORIES))
@pytest.mark.parametrize("op", sorted(READS))
def test_any_attribute_read_after_free_is_a_use_after_free(mode, kind, op):
    for seed in range(5):
        rt = free_then(mode, seed, FACTORIES[kind], READS[op])
        assert kinds(rt) == ["use-after-free"], [r.title for r in rt.reports]
        r = rt.reports[0]
        assert r.thread == "reader" and r.data["object"] == "obj"
        assert "Read of size 8 at addr obj.level by task reader/" in r.text
        assert f"(type {FACTORIES[kind].__qualname__}), freed." in r.text
        assert use_then_free(mode, seed, FACTORIES[kind], READS[op]).reports == []


def test_reading_the_dict_of_a_freed_object_is_a_use():
    rt = free_then("controlled", 0, Plain, lambda o: vars(o))
    assert kinds(rt) == ["use-after-free"]
    assert "at addr obj.__dict__ by task reader/" in rt.reports[0].text


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["plain", "dataclass", "slots"])
@pytest.mark.parametrize("op", sorted(WRITES))
def test_any_attribute_write_or_delete_after_free_is_a_use_after_free(mode, kind, op):
    rt = free_then(mode, 0, FACTORIES[kind], WRITES[op])
    assert kinds(rt) == ["use-after-free"]
    assert "Write of size 8 at addr obj.level by task reader/" in rt.reports[0].text
    assert use_then_free(mode, 0, FACTORIES[kind], WRITES[op]).reports == []


def test_a_write_to_a_freed_frozen_dataclass_is_reported_and_then_refused_as_before():
    def access(o):
        with pytest.raises(dataclasses.FrozenInstanceError):
            o.level = 5
    rt = free_then("controlled", 0, Frozen, access)
    assert kinds(rt) == ["use-after-free"]


def test_the_report_has_the_kasan_shape_with_three_stacks():
    def reader(o):
        return o.level

    def body(rt):
        obj = ksync.track(Plain(), "struct vm")
        t = rt.spawn(ksync.kfree, obj, name="freer")
        rt.join(t)
        rt.join(rt.spawn(reader, obj, name="reader"))
    rt = run(body, "controlled", 0, UAF)
    (r,) = rt.reports
    text = r.text
    assert "BUG: KASAN: use-after-free in reader" in text
    assert text.index("Call Trace:") < text.index("Allocated by task main/0:") \
        < text.index("Freed by task freer/")
    assert "test_watch.py" in text.split("Allocated by task")[1].split("Freed by")[0]
    assert "The buggy address belongs to the object struct vm (type Plain), freed." in text
    assert r.data["free_thread"] == "freer" and r.data["alloc_thread"] == "main"
    assert "reader" in r.data["stack"][0]


@pytest.mark.parametrize("mode", MODES)
def test_container_items_through_the_wrapper_track_returns(mode):
    cases = {
        "list": ([1, 2, 3], lambda c: c[0], "buf[0]"),
        "dict": ({"a": 1}, lambda c: c.__setitem__("a", 2), "buf['a']"),
        "bytearray": (bytearray(b"xyz"), lambda c: c[1], "buf[1]"),
        "ndarray": (np.zeros(4), lambda c: c[2], "buf[2]"),
        "len": ([1], lambda c: len(c), "buf.len()"),
        "iter": ([1], lambda c: list(c), "buf.iter()"),
        "method": ([1], lambda c: c.append(2), "buf.append"),
    }
    for raw, access, where in cases.values():
        def body(rt, raw=raw, access=access):
            buf = ksync.track(raw, "buf")
            assert isinstance(buf, ksync.Watched) and buf.unwrap() is raw
            access(buf)                          # live: silent
            ksync.kfree(buf)
            rt.join(rt.spawn(access, buf, name="reader"))
        rt = run(body, mode, 0, UAF)
        assert kinds(rt) == ["use-after-free"], (where, [r.title for r in rt.reports])
        assert f"at addr {where} by task reader/" in rt.reports[0].text


def test_the_wrapper_behaves_like_its_container():
    def body(rt):
        buf = ksync.track([3, 1, 2], "buf")
        buf.sort()
        buf[0] = 7
        assert len(buf) == 3 and 2 in buf and list(buf) == [7, 2, 3] and buf == [7, 2, 3]
        arr = ksync.track(np.arange(3), "arr")
        assert np.asarray(arr).sum() == 3 and arr[1] == 1
        ksync.kfree(buf)
        ksync.kfree(arr)
    assert run(body, "controlled", 0, UAF).reports == []


@pytest.mark.parametrize("mode", MODES)
def test_freed_and_never_touched_again_is_silent_and_the_class_comes_back(mode):
    objs = []

    def body(rt):
        for f in FACTORIES.values():
            o = ksync.track(f(), "obj")
            objs.append((o, type(o)))
            assert type(o) is f                  # a live tracked object is untouched
            ksync.kfree(o)
            assert watch.watch_kind(o) == "poisoned" and isinstance(o, f)
            assert type(o).__name__ == f.__name__ and watch.real_type(o) is f
    rt = run(body, mode, 0, UAF)
    assert rt.reports == []
    for o, cls in objs:
        assert type(o) is cls                    # the run ended: nothing stays swapped
    assert objs[0][0].level == 4


def test_an_object_tracked_again_after_free_is_live_again():
    def body(rt):
        o = ksync.track(Plain(), "obj")
        ksync.kfree(o)
        ksync.track(o, "obj")
        assert type(o) is Plain
        o.level += 1
        ksync.kfree(o)
    assert run(body, "controlled", 0, UAF).reports == []


@pytest.mark.parametrize("mode", MODES)
def test_double_free_and_invalid_free_are_reported_and_the_thread_goes_on(mode):
    done = []

    def body(rt):
        o = ksync.track(Plain(), "obj")
        ksync.kfree(o)
        ksync.kfree(o)
        ksync.kfree(Plain())
        ksync.kfree([1, 2])
        done.append(True)
    rt = run(body, mode, 0, UAF)
    assert kinds(rt) == ["double-free", "invalid-free", "invalid-free"]
    assert done == [True]
    assert "BUG: KASAN: double-free in body" in rt.reports[0].text
    assert "Plain (Plain) freed by main but never tracked" in rt.reports[1].title
    assert "list (list)" in rt.reports[2].title


def test_kasan_disabled_lets_a_post_mortem_read_through():
    def body(rt):
        o = ksync.track(Plain(), "obj")
        ksync.kfree(o)
        with ksync.kasan_disabled():
            assert o.level == 4
        o.level                                  # noqa: B018  (enabled again)
    rt = run(body, "controlled", 0, UAF)
    assert kinds(rt) == ["use-after-free"]


def test_outside_any_runtime_a_freed_object_reads_normally():
    o = Plain()
    assert watch.poison(o)
    assert o.level == 4 and o.depth() == 4       # no managed thread: nothing to report to
    watch.unpoison(o)
    assert type(o) is Plain


# ------------------------------------------------------------------ races
def counters(mode: str, seed: int, locked: bool, obj_factory=Counter, rounds: int = 2):
    def body(rt):
        c = ksync.shared(obj_factory(), "counter")
        m = ksync.Mutex("counter_lock")

        def worker():
            for _ in range(rounds):
                if locked:
                    with m:
                        c.bump()
                else:
                    c.bump()
        ts = [rt.spawn(worker, name=f"w{i}") for i in range(2)]
        for t in ts:
            rt.join(t)
        return c
    return run(body, mode, seed, ("races", "uaf"))


@pytest.mark.parametrize("mode", MODES)
def test_unlocked_updates_of_a_shared_object_are_a_data_race_with_both_stacks(mode):
    for seed in SEEDS:
        rt = counters(mode, seed, locked=False)
        assert "data-race" in kinds(rt), seed
        r = next(r for r in rt.reports if r.kind == "data-race")
        assert "counter.count" in r.text and r.text.count("bump") >= 2
        assert "w0" in r.text and "w1" in r.text


def test_the_same_updates_under_a_mutex_are_silent_over_500_seeds():
    for seed in range(500):
        rt = counters("controlled", seed, locked=True, rounds=1)
        assert rt.reports == [], (seed, [r.title for r in rt.reports])


def test_the_same_updates_under_a_mutex_are_silent_in_free_mode():
    for seed in range(20):
        assert counters("free", seed, locked=True, rounds=3).reports == []


def test_controlled_mode_can_lose_an_update_as_the_race_allows():
    lost = 0
    for seed in range(60):
        def body(rt):
            c = ksync.shared(Counter(), "counter")
            ts = [rt.spawn(c.bump) for _ in range(2)]
            for t in ts:
                rt.join(t)
            return c.count
        # Accesses are points only while a checker listens (else they cost nothing).
        with ksync.Runtime(mode="controlled", seed=seed, checks=("races",)) as rt:
            n = body(rt)
        lost += n == 1
    assert lost > 0                              # each access is a scheduling point


@pytest.mark.parametrize("factory", [Data, Slotted])
def test_dataclass_and_slots_objects_are_watched_too(factory):
    def body(rt):
        o = ksync.shared(factory(), "obj")

        def w():
            o.level = o.level + 1
        ts = [rt.spawn(w) for _ in range(2)]
        for t in ts:
            rt.join(t)
    rt = run(body, "controlled", 0, ("races",))
    assert kinds(rt) == ["data-race"]


def test_method_and_property_names_are_not_accesses_but_what_they_read_is():
    class WithProp(Counter):
        @property
        def double(self) -> int:
            return self.count * 2

    def body(rt):
        o = ksync.shared(WithProp(), "p")

        def reader():
            return o.double
        t1, t2 = rt.spawn(reader), rt.spawn(reader)
        rt.join(t1)
        rt.join(t2)
        o.bump()                 # after both joined: ordered, no race
    rt = run(body, "controlled", 0, ("races",))
    assert rt.reports == []


def test_a_shared_container_races_on_its_contents():
    def body(rt):
        buf = ksync.shared([], "log")
        ts = [rt.spawn(lambda i=i: buf.append(i)) for i in range(2)]
        for t in ts:
            rt.join(t)
        assert sorted(buf) == [0, 1]
    rt = run(body, "controlled", 0, ("races",))
    assert kinds(rt) == ["data-race"]
    assert "contents" in rt.reports[0].text


def test_shared_then_freed_reports_use_after_free_not_races():
    def body(rt):
        c = ksync.shared(Counter(), "counter")
        c.bump()
        ksync.kfree(c)
        rt.join(rt.spawn(c.bump, name="late"))
        assert watch.real_type(c) is Counter
    rt = run(body, "controlled", 0, ("races", "uaf"))
    assert kinds(rt) == ["use-after-free"]


def test_an_object_whose_class_cannot_be_swapped_is_refused_by_name():
    def body(rt):
        with pytest.raises(ksync.KsyncError, match=r"shared\('n'\).*type int"):
            ksync.shared(5, "n")
    run(body, "controlled", 0, ())
