"""refcount_t warnings as reports: addition on 0, underflow, saturation, leak."""

from __future__ import annotations

import pytest

import ksync
from ksync.refcount import INT_MAX, REFCOUNT_SATURATED

from .util import MODES, cases, kinds, run, spawn_all

REFCOUNT = ("refcount",)


def get_root(ref: ksync.Refcount) -> None:
    ref.inc()                      # the bug: should be inc_not_zero


def put_root(ref: ksync.Refcount) -> bool:
    return ref.dec_and_test()


@pytest.mark.parametrize("mode,seed", cases())
def test_reviving_a_count_that_reached_zero_is_addition_on_zero(mode, seed):
    def body(rt):
        ref = ksync.Refcount(1, "root->tdp_mmu_root_count")
        rt.spawn(lambda: put_root(ref), name="zapper").join()
        rt.spawn(lambda: get_root(ref), name="vcpu").join()
        assert ref.peek() == REFCOUNT_SATURATED
    rt = run(body, mode, seed, REFCOUNT)
    assert kinds(rt) == ["refcount"]
    r = rt.reports[0]
    assert r.thread == "vcpu"
    assert "------------[ cut here ]------------" in r.text
    assert "refcount_t: addition on 0; use-after-free." in r.text
    assert "WARNING: vcpu/2 in inc of root->tdp_mmu_root_count at " in r.text
    d = r.to_dict()
    assert d["object"] == "root->tdp_mmu_root_count" and d["op"] == "inc"
    assert d["warning"] == "addition on 0; use-after-free"
    assert d["stack"][0].endswith(" get_root") and "test_refcount.py" in d["site"]


@pytest.mark.parametrize("mode,seed", cases()[::2])
def test_putting_twice_is_underflow(mode, seed):
    def body(rt):
        ref = ksync.Refcount(1, "kvm->users_count")
        spawn_all(rt, lambda: put_root(ref))
        assert put_root(ref) is False          # saturated, never "last reference"
    rt = run(body, mode, seed, REFCOUNT)
    assert kinds(rt) == ["refcount"]
    assert rt.reports[0].data["warning"] == "underflow; use-after-free"
    assert rt.reports[0].data["op"] == "dec_and_test"


@pytest.mark.parametrize("mode", MODES)
def test_overflow_saturates_and_stays_saturated(mode):
    def body(rt):
        ref = ksync.Refcount(INT_MAX, "page->refcount")
        ref.inc()
        assert ref.peek() == REFCOUNT_SATURATED
        for _ in range(3):
            assert not ref.dec_and_test()
        ref.add(5)
        assert ref.read() == REFCOUNT_SATURATED
    rt = run(body, mode, 0, REFCOUNT)
    assert kinds(rt) == ["refcount"]           # once per object: the rest is its consequence
    assert rt.reports[0].data["warning"] == "saturated; leaking memory"


@pytest.mark.parametrize("mode", MODES)
def test_refcount_dec_to_zero_leaks(mode):
    def body(rt):
        ref = ksync.Refcount(1, "obj->refcount")
        ref.dec()
    rt = run(body, mode, 0, REFCOUNT)
    assert [r.data["warning"] for r in rt.reports] == ["decrement hit 0; leaking memory"]


@pytest.mark.parametrize("mode,seed", cases())
def test_get_and_put_by_many_threads_with_inc_not_zero_is_silent(mode, seed):
    def body(rt):
        ref = ksync.Refcount(1, "root->tdp_mmu_root_count")
        dead = ksync.Atomic(0, "freed")

        def user():
            for _ in range(3):
                if ref.inc_not_zero():         # a root at zero is never revived
                    if put_root(ref):
                        dead.inc()
        ts = [rt.spawn(user, name=f"vcpu{i}") for i in range(3)]
        if put_root(ref):                      # the list's reference
            dead.inc()
        for t in ts:
            t.join()
        assert ref.peek() == 0 and dead.peek() == 1
        assert not ref.inc_not_zero() and ref.peek() == 0
    rt = run(body, mode, seed, REFCOUNT)
    assert rt.reports == []


@pytest.mark.parametrize("mode", MODES)
def test_refcount_off_saturates_silently(mode):
    def body(rt):
        ref = ksync.Refcount(0, "obj->refcount")
        ref.inc()
        assert ref.peek() == REFCOUNT_SATURATED
    assert run(body, mode, 0, ("lockdep",)).reports == []


@pytest.mark.parametrize("make", [
    lambda: ksync.Refcount("1", "obj->refcount"),
    lambda: ksync.Refcount(-1, "obj->refcount"),
    lambda: ksync.Refcount(1, ""),
    lambda: ksync.Refcount(1, "obj->refcount").add(-2),
    lambda: ksync.Refcount(1, "obj->refcount").sub_and_test(1.5),
    lambda: ksync.Refcount(1, "obj->refcount").set(None),
])
def test_bad_counts_are_errors_naming_the_call_site(make):
    with ksync.Runtime(mode="controlled", checks=REFCOUNT):
        with pytest.raises(ksync.KsyncError, match=r"test_refcount\.py:\d+"):
            make()
