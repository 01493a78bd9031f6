"""Use-after-free and double-free: KASAN-shaped reports with three stacks."""

from __future__ import annotations

import pytest

import ksync

from .util import MODES, cases, get_checker, kinds, of_kind, run, spawn_all

UAF = ("uaf",)


class Obj:
    """A user object put under watch with ``ksync.track``."""

    def __init__(self) -> None:
        self.refs = ksync.Refcount(1, "obj->refcount")
        self.lock = ksync.SpinLock("obj->lock")


def alloc_obj() -> Obj:
    return ksync.track(Obj(), "struct obj")


def free_obj(obj: Obj) -> None:
    ksync.kfree(obj)


def use_obj(obj: Obj) -> None:
    ksync.check_access(obj, "data", write=True)


@pytest.mark.parametrize("mode,seed", cases())
def test_access_after_another_thread_freed_it_is_use_after_free(mode, seed):
    def body(rt):
        obj = alloc_obj()
        freed = ksync.Completion("freed")

        def freer():
            free_obj(obj)                     # the bug: frees while a user remains
            freed.complete()

        def user():
            freed.wait()
            use_obj(obj)
        rt.spawn(freer, name="freer")
        rt.spawn(user, name="user").join()
    rt = run(body, mode, seed, UAF)
    assert kinds(rt) == ["use-after-free"]
    r = rt.reports[0]
    for piece in ("BUG: KASAN: use-after-free in use_obj",
                  "Write of size 8 at addr struct obj.data by task user/",
                  "Call Trace:", "Allocated by task main/0:", "Freed by task freer/",
                  "The buggy address belongs to the object struct obj (type Obj), freed."):
        assert piece in r.text, piece
    d = r.to_dict()
    assert d["object"] == "struct obj" and d["alloc_thread"] == "main"
    assert d["free_thread"] == "freer" and d["access"] == "Write of size 8"
    assert d["stack"][0].endswith(" use_obj")
    assert d["alloc_stack"][0].endswith(" alloc_obj")
    assert d["free_stack"][0].endswith(" free_obj")


@pytest.mark.parametrize("mode,seed", cases())
def test_a_refcounted_lifetime_is_silent(mode, seed):
    def body(rt):
        obj = alloc_obj()

        def put(o):
            if o.refs.dec_and_test():
                free_obj(o)

        def user():
            use_obj(obj)
            with obj.lock:
                use_obj(obj)
            put(obj)
        for _ in range(2):
            obj.refs.inc()
        spawn_all(rt, user, user)
        put(obj)
        assert get_checker(rt, "uaf").quarantine == 1
    rt = run(body, mode, seed, ("uaf", "refcount"))
    assert rt.reports == []


@pytest.mark.parametrize("mode,seed", cases()[::2])
def test_freeing_twice_is_a_double_free(mode, seed):
    def body(rt):
        obj = alloc_obj()

        def first():
            free_obj(obj)

        def second():
            ksync.kfree(obj)
        rt.spawn(first, name="first").join()
        rt.spawn(second, name="second").join()
    rt = run(body, mode, seed, UAF)
    assert kinds(rt) == ["double-free"]
    r = rt.reports[0]
    assert "BUG: KASAN: double-free in second" in r.text
    assert "Free of addr struct obj by task second/" in r.text
    assert "Freed by task first/" in r.text and "already freed" in r.text
    assert r.data["free_stack"][0].endswith(" free_obj")


@pytest.mark.parametrize("mode", MODES)
def test_a_freed_shared_cell_is_poisoned_for_reads_and_writes(mode):
    def body(rt):
        cell = ksync.Shared("stats", 0)
        cell.write(1)
        ksync.kfree(cell)
        cell.read()
    rt = run(body, mode, 0, UAF)
    (r,) = of_kind(rt, "use-after-free")
    assert "Read of size 8 at addr stats" in r.text
    assert "ksync.Shared cell, never passed to ksync.track" in r.text


@pytest.mark.parametrize("mode", MODES)
def test_locking_and_refcounting_a_freed_object_are_uses(mode):
    def body(rt):
        obj = alloc_obj()
        lock = ksync.track(obj.lock, "obj->lock")
        refs = ksync.track(obj.refs, "obj->refcount")
        # Reading obj.lock after free_obj(obj) would itself be a use: keep them.
        free_obj(obj)
        ksync.kfree(lock)
        ksync.kfree(refs)
        with lock:
            pass
        refs.inc()
    rt = run(body, mode, 0, UAF)
    assert kinds(rt) == ["use-after-free", "use-after-free"]
    assert "(lock acquired)" in rt.reports[0].text
    assert "(refcount inc)" in rt.reports[1].text


@pytest.mark.parametrize("mode", MODES)
def test_tracking_again_after_free_is_a_new_life_and_untracked_frees_are_invalid(mode):
    def body(rt):
        obj = alloc_obj()
        free_obj(obj)
        ksync.track(obj, "struct obj")        # reallocated: a fresh object now
        use_obj(obj)
        free_obj(obj)
        ksync.kfree(object())                 # never tracked: an invalid free
        other = Obj()
        ksync.kfree(other)
        ksync.check_access(other, "data")     # untracked: nothing to poison
        other.data = 2                        # the freeing thread went on
    rt = run(body, mode, 0, UAF)
    assert kinds(rt) == ["invalid-free", "invalid-free"]
    assert "BUG: KASAN: invalid-free in body" in rt.reports[0].text
    assert "(type object) was never allocated under watch" in rt.reports[0].text
    assert "Obj (Obj) freed by main but never tracked" in rt.reports[1].title


def test_each_use_site_is_reported_once():
    def body(rt):
        obj = alloc_obj()
        free_obj(obj)
        for _ in range(5):
            use_obj(obj)
    rt = run(body, "controlled", 0, UAF)
    assert kinds(rt) == ["use-after-free"]


def test_uaf_off_reports_nothing():
    def body(rt):
        obj = alloc_obj()
        free_obj(obj)
        free_obj(obj)
        use_obj(obj)
    assert run(body, "controlled", 0, ("races",)).reports == []
