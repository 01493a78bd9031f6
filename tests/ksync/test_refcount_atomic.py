"""Refcount (refcount_t) and Atomic (atomic_t) semantics."""

from __future__ import annotations

import pytest

import ksync
from ksync import REFCOUNT_SATURATED, Atomic, Refcount

from .helpers import MODES, SEEDS, kinds, run


def _rc(body, mode="controlled"):
    return run(body, mode, checks=("refcount",))


@pytest.mark.parametrize("mode", MODES)
def test_inc_not_zero_never_revives_a_dead_count(mode):
    def body(rt):
        r = Refcount(1, "root->tdp_mmu_root_count")
        a = r.inc_not_zero()
        last = [r.dec_and_test(), r.dec_and_test()]
        b = r.inc_not_zero()
        return a, last, b, r.peek()

    rt, got = _rc(body, mode)
    assert got == (True, [False, True], False, 0)
    assert rt.reports == []


@pytest.mark.parametrize("mode", MODES)
def test_increment_from_zero_warns_use_after_free_and_saturates(mode):
    def body(rt):
        r = Refcount(0, "root->tdp_mmu_root_count")
        r.inc()
        r.inc()
        return r.peek(), r.dec_and_test()

    rt, (v, freed) = _rc(body, mode)
    assert v == REFCOUNT_SATURATED and freed is False
    assert kinds(rt) == ["refcount"]                    # WARN_ONCE per object
    assert "addition on 0; use-after-free" in rt.reports[0].text
    assert "root->tdp_mmu_root_count" in rt.reports[0].title


@pytest.mark.parametrize("mode", MODES)
def test_decrement_below_zero_warns_underflow(mode):
    def body(rt):
        r = Refcount(1, "kvm->users_count")
        assert r.dec_and_test()
        return r.dec_and_test(), r.peek()

    rt, got = _rc(body, mode)
    assert got == (False, REFCOUNT_SATURATED)
    assert "underflow; use-after-free" in rt.reports[0].text


def test_overflow_saturates_and_the_object_is_leaked_not_freed():
    def body(rt):
        r = Refcount(0x7FFF_FFFF, "big")
        r.inc()
        return r.peek(), [r.dec_and_test() for _ in range(3)], r.peek()

    rt, (v, frees, after) = _rc(body)
    assert v == REFCOUNT_SATURATED and frees == [False] * 3 and after == REFCOUNT_SATURATED
    assert "saturated; leaking memory" in rt.reports[0].text


def test_dec_to_zero_with_refcount_dec_warns_leak():
    rt, _ = _rc(lambda rt: Refcount(1, "leaky").dec())
    assert "decrement hit 0; leaking memory" in rt.reports[0].text


def test_refcount_warnings_are_silent_when_the_checker_is_off():
    rt, _ = run(lambda rt: Refcount(0, "x").inc(), checks=())
    assert rt.reports == []


def test_set_and_read():
    def body(rt):
        r = Refcount(5, "r")
        r.set(1)
        return r.read()

    assert _rc(body)[1] == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", SEEDS)
def test_concurrent_gets_and_puts_free_exactly_once(mode, seed):
    def body(rt):
        r = Refcount(1, "obj")
        frees = Atomic(0, "frees")

        def user():
            for _ in range(10):
                if r.inc_not_zero():
                    if r.dec_and_test():
                        frees.inc()

        ts = [rt.spawn(user, name=f"u{i}") for i in range(3)]
        if r.dec_and_test():
            frees.inc()
        for t in ts:
            t.join()
        return frees.peek()

    rt, frees = _rc(body, mode)
    assert frees == 1 and rt.reports == []


@pytest.mark.parametrize("mode", MODES)
def test_atomic_operations_return_kernel_values(mode):
    def body(rt):
        a = Atomic(5, "a")
        return (a.cmpxchg(5, 7), a.cmpxchg(5, 9), a.read(), a.xchg(1), a.add_return(3),
                a.fetch_add(2), a.dec_and_test(), a.try_cmpxchg(5, 0), a.peek())

    _, got = run(body, mode)
    assert got == (5, 7, 7, 7, 4, 4, False, True, 0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", SEEDS)
def test_atomic_increments_from_many_threads_are_never_lost(mode, seed):
    def body(rt):
        a = Atomic(0, "counter")
        ts = [rt.spawn(lambda: [a.inc() for _ in range(50)], name=f"t{i}") for i in range(4)]
        for t in ts:
            t.join()
        return a.peek()

    assert run(body, mode, seed, noise=0.2 if mode == "free" else 0.0)[1] == 200


def test_refcount_on_misuse_has_a_stack_in_the_report():
    rt, _ = _rc(lambda rt: Refcount(0, "r").inc())
    assert "test_refcount_atomic.py" in rt.reports[0].text
    assert ksync.KINDS.count("refcount") == 1
