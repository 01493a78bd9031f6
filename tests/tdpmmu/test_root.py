"""The root state machine: references, roles, invalidation, and every put_root branch.

Each test drives the model from the main thread of a controlled runtime with
every checker on; vCPUs "run" on the calling thread (``Vcpu.access``), and
the async generation's zap worker is a real kworker thread.
"""

from __future__ import annotations

import pytest

import ksync
import tdpmmu.zapper
from tdpmmu import Kvm, kvm_mmu_zap_all_fast, set_memory_region
from tdpmmu.pagetable import count_present
from tdpmmu.root import (
    get_root,
    invalidate_all_roots,
    put_root,
    zap_invalidated_roots,
)
from tdpmmu.vcpu import KVM_REQ_MMU_FREE_OBSOLETE_ROOTS

from .vm_helpers import (
    ZAPS,
    Lifetimes,
    assert_no_reports,
    assert_nothing_reachable_from_freed,
    assert_torn_down,
    run,
    titles,
)

pytestmark = pytest.mark.timeout(60)


def vm(zap: str, vcpus: int = 1, **vkw) -> tuple[Kvm, list]:
    """A VM with one slot at gfns [1, 4097): misaligned, so every mapping is 4K."""
    kvm = Kvm(zap=zap)
    set_memory_region(kvm, 0, 1, 4096)
    return kvm, [kvm.create_vcpu(**vkw) for _ in range(vcpus)]


def count(root) -> int:
    return root.tdp_mmu_root_count.peek()


def zap_all_fast(kvm: Kvm) -> None:
    with kvm.slots_lock:
        kvm_mmu_zap_all_fast(kvm)


def put_locked(kvm: Kvm, root, shared: bool = True) -> None:
    if shared:
        with kvm.mmu_lock.read():
            put_root(kvm, root, True)
    else:
        with kvm.mmu_lock.write():
            put_root(kvm, root, False)


@pytest.fixture
def zap_calls(monkeypatch):
    """Record every root zap: (root, count at start, thread, can_yield, root still listed)."""
    calls = []
    real = tdpmmu.zapper.tdp_mmu_zap_root

    def spy(kvm, root, shared, can_yield=True):
        calls.append((root, count(root), ksync.current_thread().name, can_yield,
                      root in kvm.tdp_mmu_roots))
        return real(kvm, root, shared, can_yield)

    monkeypatch.setattr(tdpmmu.zapper, "tdp_mmu_zap_root", spy)
    return calls


# ------------------------------------------------------------------ get_root / roles
@pytest.mark.parametrize("zap", ZAPS)
def test_get_root_never_revives_a_root_whose_count_reached_zero(zap):
    def body(rt):
        kvm, (v,) = vm(zap)
        v.mmu_load()
        root = v.root
        held = count(root)
        root.tdp_mmu_root_count.set(0)
        assert not get_root(kvm, root)
        assert count(root) == 0
        root.tdp_mmu_root_count.set(held)
        assert get_root(kvm, root) and count(root) == held + 1
        put_locked(kvm, root)
        kvm.destroy()
    rt, _ = run(body)
    assert_no_reports(rt)


@pytest.mark.parametrize("zap", ZAPS)
def test_vcpus_of_the_same_role_share_one_root_and_other_roles_get_their_own(zap):
    def body(rt):
        kvm = Kvm(zap=zap)
        set_memory_region(kvm, 0, 0, 64)
        set_memory_region(kvm, 1, 0, 64, as_id=1)
        a, b = kvm.create_vcpu(), kvm.create_vcpu()
        smm = kvm.create_vcpu(as_id=1, smm=True)
        nested = kvm.create_vcpu(guest_mode=True)
        for v in (a, b, smm, nested):
            v.mmu_load()
        assert a.root is b.root
        assert len({id(a.root), id(smm.root), id(nested.root)}) == 3
        # MMU reference (preserve) + one per vCPU.
        assert count(a.root) == (3 if zap == "preserve" else 2)
        # list_add_rcu: the newest root is at the head of the list.
        assert kvm.tdp_mmu_roots[0] is nested.root
        assert kvm.stats.roots_allocated == 3 and kvm.stats.roots_reused == 1
        kvm.destroy()
        assert_torn_down(kvm)
    rt, _ = run(body)
    assert_no_reports(rt)


@pytest.mark.parametrize("zap", ZAPS)
def test_an_invalid_root_is_never_handed_to_a_vcpu_loading_its_mmu(zap):
    def body(rt):
        kvm, (a, b) = vm(zap, 2)
        assert a.access(5, write=True)
        old = a.root
        zap_all_fast(kvm)
        assert old.invalid
        assert a.requests.peek() & KVM_REQ_MMU_FREE_OBSOLETE_ROOTS
        b.mmu_load()
        assert b.root is not old and not b.root.invalid
        assert a.access(5)          # handles the request, drops old, reuses b's root
        assert a.root is b.root
        kvm.destroy()
        assert_torn_down(kvm)
    rt, _ = run(body)
    assert_no_reports(rt)


# ------------------------------------------------------------------ put_root: all generations
@pytest.mark.parametrize("zap", ZAPS)
def test_a_put_that_is_not_the_last_only_drops_the_count(zap, zap_calls):
    def body(rt):
        kvm, (a, b) = vm(zap, 2)
        assert a.access(1, write=True) and b.access(2)
        root = a.root
        before = count(root)
        a.mmu_unload()
        assert count(root) == before - 1 and not root.invalid
        assert root in kvm.tdp_mmu_roots and count_present(root.page) == 2
        assert zap_calls == [] and kvm.stats.zaps_queued == 0
        kvm.destroy()
    rt, _ = run(body)
    assert_no_reports(rt)


@pytest.mark.parametrize("zap", ZAPS)
def test_put_root_without_mmu_lock_is_a_lockdep_assertion(zap):
    def body(rt):
        kvm, (a, b) = vm(zap, 2)
        a.mmu_load()
        b.mmu_load()
        put_root(kvm, a.root, True)     # no mmu_lock held
        a.root = None
        kvm.destroy()
    rt, _ = run(body)
    assert [r.kind for r in rt.reports] == ["warn"], titles(rt)
    assert "kvm->mmu_lock for read" in rt.reports[0].title


# ------------------------------------------------------------------ sync (before the seed)
def test_sync_last_put_unlinks_then_zaps_inline_without_yielding_then_frees(zap_calls):
    life = Lifetimes()

    def body(rt):
        kvm, (v,) = vm("sync")
        v.touch(1, 600, write=True)
        root = v.root
        v.mmu_unload()
        [(zapped, n, thread, can_yield, listed)] = zap_calls
        assert zapped is root and n == 0 and thread == "main"
        assert not can_yield and not listed       # unreachable: must not drop mmu_lock
        assert kvm.stats.zapped_sptes == 600
        assert kvm.stats.roots_freed == 1 and kvm.stats.zaps_queued == 0
        ksync.rcu_barrier()
        with ksync.kasan_disabled():      # the freed root, post mortem
            assert root.freed and kvm.alloc.live_pages == 0
        kvm.destroy()
        assert_torn_down(kvm)
    rt, _ = run(body, lifetimes=life)
    assert_no_reports(rt)


def test_sync_zap_all_fast_zaps_invalidated_roots_in_the_caller_and_holders_free_them(zap_calls):
    def body(rt):
        kvm, (a, b) = vm("sync", 2)
        a.touch(1, 40, write=True)
        b.access(1)
        root = a.root
        zap_all_fast(kvm)
        # Zapped by the invalidating task, under the read lock, with a reference.
        assert [(c[0], c[1], c[2], c[3]) for c in zap_calls] == [(root, 3, "main", True)]
        assert root.invalid and count(root) == 2 and count_present(root.page) == 0
        a.mmu_unload()
        assert not root.freed and root in kvm.tdp_mmu_roots
        b.mmu_unload()                     # last put: unlink, (empty) zap, free
        assert root not in kvm.tdp_mmu_roots and kvm.stats.roots_freed == 1
        kvm.destroy()
        assert_torn_down(kvm)
    rt, _ = run(body)
    assert_no_reports(rt)


# ------------------------------------------------------------------ async (the seed)
def test_async_last_put_of_a_valid_root_marks_it_invalid_and_hands_one_reference_to_the_worker(
        zap_calls):
    def body(rt):
        kvm, (v,) = vm("async")
        v.touch(1, 600, write=True)
        root = v.root
        v.mmu_unload()
        # put_root: invalid, count set back to one, zap queued; nothing zapped here.
        assert root.invalid and kvm.stats.zaps_queued == 1
        assert root.freed is False
        kvm.flush_zap_queue()
        [(zapped, n, thread, can_yield, listed)] = zap_calls
        assert zapped is root and n == 1 and thread != "main" and can_yield and listed
        assert kvm.stats.zapped_sptes == 600
        assert root not in kvm.tdp_mmu_roots and kvm.stats.roots_freed == 1
        ksync.rcu_barrier()
        with ksync.kasan_disabled():      # the freed root, post mortem
            assert root.freed and kvm.stats.inline_zaps == 0
        kvm.destroy()
        assert_torn_down(kvm)
    rt, _ = run(body)
    assert_no_reports(rt)


def test_async_worker_put_leaves_the_root_to_the_last_vcpu_still_holding_it(zap_calls):
    def body(rt):
        kvm, (a, b) = vm("async", 2)
        a.touch(1, 30, write=True)
        b.access(3)
        root = a.root
        zap_all_fast(kvm)             # invalidate takes the worker's reference; flush
        [(zapped, n, thread, _, _)] = zap_calls
        assert zapped is root and n == 3 and thread != "main"
        # The worker owned exactly one reference: the two vCPUs' remain.
        assert count(root) == 2 and root.invalid and root in kvm.tdp_mmu_roots
        assert count_present(root.page) == 0
        a.mmu_unload()
        b.mmu_unload()                # last put of an invalid root: unlink and free
        assert root not in kvm.tdp_mmu_roots and kvm.stats.roots_freed == 1
        assert kvm.stats.zaps_queued == 1 and len(zap_calls) == 1
        kvm.destroy()
        assert_torn_down(kvm)
    rt, _ = run(body)
    assert_no_reports(rt)


def test_async_put_while_the_vm_is_destroyed_zaps_inline_instead_of_queueing(zap_calls):
    life = Lifetimes()

    def body(rt):
        kvm, (a, b) = vm("async", 2)
        a.touch(1, 100, write=True)
        b.mmu_load()
        kvm.destroy()     # users_count 0: each vCPU unload; the last put zaps here
        [(_, n, thread, can_yield, listed)] = zap_calls
        assert n == 1 and thread == "main" and can_yield and listed
        with ksync.kasan_disabled():      # the freed struct kvm, post mortem
            assert kvm.stats.inline_zaps == 1 and kvm.stats.zaps_queued == 0
        assert_torn_down(kvm)
        return kvm
    rt, kvm = run(body, lifetimes=life)
    assert_no_reports(rt)
    assert_nothing_reachable_from_freed(life, kvm)


def test_async_inline_zap_leaves_the_root_when_a_reference_was_taken_meanwhile(monkeypatch):
    taken = []
    real = tdpmmu.zapper.tdp_mmu_zap_root

    def zap_and_race(kvm, root, shared, can_yield=True):
        # While the zap yields, a root walker (e.g. a host invalidation) gets a reference.
        assert get_root(kvm, root)
        taken.append(root)
        return real(kvm, root, shared, can_yield)

    monkeypatch.setattr(tdpmmu.zapper, "tdp_mmu_zap_root", zap_and_race)

    def body(rt):
        kvm, (v,) = vm("async")
        v.touch(1, 10, write=True)
        root = v.root
        kvm.users_count.set(0)           # as in kvm_destroy_vm, before the vCPUs go
        v.mmu_unload()
        assert taken == [root] and count(root) == 1 and root in kvm.tdp_mmu_roots
        monkeypatch.setattr(tdpmmu.zapper, "tdp_mmu_zap_root", real)
        put_locked(kvm, root)            # the walker's put: last, of an invalid root
        assert root not in kvm.tdp_mmu_roots and kvm.stats.roots_freed == 1
        kvm.users_count.set(1)
        kvm.destroy()
        assert_torn_down(kvm)
    rt, _ = run(body)
    assert_no_reports(rt)


def test_async_invalidate_all_roots_queues_each_valid_root_once(zap_calls):
    def body(rt):
        kvm, (v,) = vm("async")
        v.access(1)
        root = v.root
        with kvm.mmu_lock.write():
            invalidate_all_roots(kvm)
            assert root.invalid and count(root) == 2 and kvm.stats.zaps_queued == 1
            invalidate_all_roots(kvm)    # already invalid: skipped, no second reference
            assert count(root) == 2 and kvm.stats.zaps_queued == 1
        zap_invalidated_roots(kvm)
        assert len(zap_calls) == 1 and count(root) == 1
        kvm.destroy()
        assert_torn_down(kvm)
    rt, _ = run(body)
    assert_no_reports(rt)


@pytest.mark.parametrize("zap", ["sync", "async"])
def test_invalidate_all_roots_warns_on_a_valid_root_without_references(zap):
    def body(rt):
        kvm, (v,) = vm(zap)
        v.mmu_load()
        root = v.root
        root.tdp_mmu_root_count.set(0)
        with kvm.mmu_lock.write():
            invalidate_all_roots(kvm)
        assert not root.invalid
        root.tdp_mmu_root_count.set(1)
        kvm.destroy()
    rt, _ = run(body)
    assert [r.kind for r in rt.reports] == ["warn"], titles(rt)
    assert "valid root with no reference" in rt.reports[0].title


# ------------------------------------------------------------------ preserve (6.6 on)
def test_preserve_keeps_a_root_with_its_mappings_after_the_last_vcpu_put(zap_calls):
    def body(rt):
        kvm, (v,) = vm("preserve")
        v.touch(1, 50, write=True)
        root = v.root
        v.mmu_unload()
        assert count(root) == 1 and not root.invalid and count_present(root.page) == 50
        faults = kvm.stats.faults
        v.touch(1, 50)                  # reloads the same root: no new fault
        assert v.root is root and kvm.stats.faults == faults
        zap_all_fast(kvm)               # invalidated, zapped by the caller, MMU ref put
        # MMU + vCPU + the root iterator's reference while it zaps.
        assert zap_calls[0][:3] == (root, 3, "main") and count(root) == 1
        v.mmu_unload()
        assert root not in kvm.tdp_mmu_roots and zap_calls[1:] == []
        kvm.destroy()
        assert_torn_down(kvm)
    rt, _ = run(body)
    assert_no_reports(rt)


def test_preserve_last_put_of_a_valid_root_is_a_warning():
    def body(rt):
        kvm, (v,) = vm("preserve")
        v.mmu_load()
        root = v.root
        root.tdp_mmu_root_count.set(1)     # lose the MMU's own reference
        v.mmu_unload()
        assert root not in kvm.tdp_mmu_roots
        kvm.destroy()
    rt, _ = run(body)
    assert [r.kind for r in rt.reports] == ["warn"], titles(rt)
    assert "last reference put on a valid root" in rt.reports[0].title
