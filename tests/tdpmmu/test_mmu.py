"""VM-wide MMU operations: memslots, the fast zap, host invalidations, dirty logging."""

from __future__ import annotations

import pytest

from tdpmmu import (
    KVM_MEM_LOG_DIRTY_PAGES,
    Kvm,
    MemslotError,
    get_dirty_log,
    kvm_mmu_zap_all_fast,
    mmu_notifier_invalidate_range,
    set_memory_region,
)
from tdpmmu.pagetable import count_present, iter_leaf_mappings
from tdpmmu.root import invalidate_all_roots, zap_invalidated_roots
from tdpmmu.spte import WRITABLE, spte_pfn
from tdpmmu.vcpu import KVM_REQ_MMU_FREE_OBSOLETE_ROOTS

from .vm_helpers import ZAPS, assert_no_reports, assert_torn_down, run, titles

pytestmark = pytest.mark.timeout(60)


def leaves(root, start=0, end=None):
    return list(iter_leaf_mappings(root.page, start, end))


# ------------------------------------------------------------------ memslots
def test_memslots_are_kept_sorted_by_base_and_found_by_gfn_per_address_space():
    def body(rt):
        kvm = Kvm()
        for sid, base in ((3, 500), (1, 0), (2, 100)):
            set_memory_region(kvm, sid, base, 50)
        set_memory_region(kvm, 1, 0, 10, as_id=1)
        assert [s.id for s in kvm.memslots[0]] == [1, 2, 3]
        assert kvm.memslots[0].find(120).id == 2 and kvm.memslots[0].find(60) is None
        assert kvm.memslots[1].find(5).id == 1 and kvm.memslots[1].find(120) is None
        kvm.destroy()
    rt, _ = run(body)
    assert_no_reports(rt)


@pytest.mark.parametrize("call, error, match", [
    (lambda k: set_memory_region(k, 9, 25, 10), MemslotError, "overlaps"),
    (lambda k: set_memory_region(k, 0, 0, 20), ValueError, "cannot change size"),
    (lambda k: set_memory_region(k, 7, 0, 0), ValueError, "does not exist"),
    (lambda k: set_memory_region(k, 7, -1, 4), ValueError, "negative"),
    (lambda k: set_memory_region(k, 7, 0, 4, as_id=2), ValueError, "address space 2"),
    (lambda k: set_memory_region(k, 0, 25, 10), MemslotError, "overlaps"),   # a move
    (lambda k: get_dirty_log(k, 5), ValueError, "no memslot 5"),
    (lambda k: get_dirty_log(k, 0), ValueError, "does not log dirty pages"),
])
def test_bad_memslot_requests_are_refused_before_anything_changes(call, error, match):
    def body(rt):
        kvm = Kvm()
        set_memory_region(kvm, 0, 0, 10)
        set_memory_region(kvm, 1, 30, 10)
        gen = kvm.mmu_valid_gen
        with pytest.raises(error, match=match):
            call(kvm)
        assert kvm.mmu_valid_gen == gen
        assert [(s.id, s.base_gfn, s.invalid) for s in kvm.memslots[0]] == \
            [(0, 0, False), (1, 30, False)]
        kvm.destroy()
    rt, _ = run(body)
    assert_no_reports(rt)


@pytest.mark.parametrize("zap", ZAPS)
def test_deleting_a_memslot_zaps_everything_and_its_gfns_become_mmio(zap):
    def body(rt):
        kvm = Kvm(zap=zap)
        set_memory_region(kvm, 0, 1, 100)
        set_memory_region(kvm, 1, 200, 100)
        v = kvm.create_vcpu()
        v.touch(1, 100, True, 10)
        v.touch(200, 100, False, 10)
        assert set_memory_region(kvm, 1, 200, 0) is None
        for root in kvm.tdp_mmu_roots:
            assert not leaves(root, 200, 300)
        assert v.access(210) is False and v.access(5)
        kvm.destroy()
        assert_torn_down(kvm)
    rt, _ = run(body)
    assert_no_reports(rt)


def test_moving_a_memslot_maps_its_host_pages_at_the_new_gfns():
    def body(rt):
        kvm = Kvm()
        slot = set_memory_region(kvm, 0, 1, 100)
        v = kvm.create_vcpu()
        v.access(5)
        [(_, _, old)] = leaves(v.root)
        set_memory_region(kvm, 0, 1001, 100)
        assert slot.base_gfn == 1001 and not slot.invalid
        assert v.access(5) is False and v.access(1005)
        [(gfn, _, new)] = leaves(v.root)
        assert gfn == 1005 and spte_pfn(new) == spte_pfn(old)
        kvm.destroy()
    rt, _ = run(body)
    assert_no_reports(rt)


# ------------------------------------------------------------------ zap_all_fast
@pytest.mark.parametrize("zap", ZAPS)
def test_zap_all_fast_invalidates_every_root_requests_reloads_and_zaps_before_returning(zap):
    def body(rt):
        kvm = Kvm(zap=zap)
        set_memory_region(kvm, 0, 1, 300)
        set_memory_region(kvm, 1, 0, 300, as_id=1)
        a, b = kvm.create_vcpu(), kvm.create_vcpu(as_id=1, smm=True)
        a.touch(1, 300, True)
        b.touch(0, 300, True)
        roots = list(kvm.tdp_mmu_roots)
        gen = kvm.mmu_valid_gen
        with kvm.slots_lock:
            kvm_mmu_zap_all_fast(kvm)
        assert kvm.mmu_valid_gen != gen
        assert all(r.invalid for r in roots)
        assert all(v.requests.peek() & KVM_REQ_MMU_FREE_OBSOLETE_ROOTS for v in (a, b))
        # Zapped before returning, although both vCPUs still hold their roots.
        assert all(count_present(r.page) == 0 for r in roots)
        assert kvm.alloc.live_leaves == 0 and kvm.stats.zapped_sptes == 600
        assert a.access(3) and a.root not in roots
        kvm.destroy()
        assert_torn_down(kvm)
    rt, _ = run(body)
    assert_no_reports(rt)


def test_zap_all_fast_needs_slots_lock():
    def body(rt):
        kvm = Kvm()
        kvm_mmu_zap_all_fast(kvm)
        kvm.destroy()
    rt, _ = run(body)
    assert [r.kind for r in rt.reports] == ["warn"], titles(rt)
    assert "slots_lock" in rt.reports[0].title


# ------------------------------------------------------------------ host invalidation
def invalid_root_still_in_use(kvm: Kvm):
    """A vCPU's root, invalidated but not yet zapped (sync generation, done by hand)."""
    v = kvm.create_vcpu()
    v.touch(1, 64, True)
    with kvm.mmu_lock.write():
        invalidate_all_roots(kvm)
    return v, v.root


@pytest.mark.parametrize("bug", [(), ("skip-invalid-roots-on-notifier",)])
def test_a_host_invalidation_zaps_the_range_in_valid_and_invalid_roots(bug):
    def body(rt):
        kvm = Kvm(zap="sync", bugs=bug)
        set_memory_region(kvm, 0, 1, 64)
        v, old = invalid_root_still_in_use(kvm)
        w = kvm.create_vcpu()
        w.touch(1, 64, True)
        assert w.root is not old and not w.root.invalid
        flushes = kvm.stats.tlb_flushes
        assert mmu_notifier_invalidate_range(kvm, 0, 10, 20) == 10
        assert kvm.stats.tlb_flushes > flushes and not w.tlb
        assert not leaves(w.root, 10, 20)
        if not bug:
            assert not leaves(old, 10, 20)          # invariant 10, invalid root included
        assert len(leaves(w.root)) == 54
        zap_invalidated_roots(kvm)
        kvm.destroy()
        assert_torn_down(kvm)
    rt, _ = run(body)
    if bug:
        # The stale mapping's later zap touches a page the host already freed.
        assert rt.reports and {r.kind for r in rt.reports} == {"use-after-free"}, titles(rt)
    else:
        assert_no_reports(rt)


def test_an_empty_host_invalidation_does_nothing():
    def body(rt):
        kvm = Kvm()
        set_memory_region(kvm, 0, 1, 64)
        assert mmu_notifier_invalidate_range(kvm, 0, 30, 30) == 0
        assert kvm.mmu_invalidate_seq == 0
        kvm.destroy()
    rt, _ = run(body)
    assert_no_reports(rt)


# ------------------------------------------------------------------ dirty logging
@pytest.mark.parametrize("zap", ZAPS)
def test_dirty_logging_splits_the_root_to_4k_write_protected_and_logs_each_write(zap):
    def body(rt):
        kvm = Kvm(zap=zap)
        set_memory_region(kvm, 0, 0, 1024)
        v = kvm.create_vcpu()
        v.touch(0, 1024, True, 512)                       # two 2M leaves
        assert [lvl for _, lvl, _ in leaves(v.root)] == [2, 2]
        slot = set_memory_region(kvm, 0, 0, 1024, KVM_MEM_LOG_DIRTY_PAGES)
        after = leaves(v.root)
        assert len(after) == 1024 and {lvl for _, lvl, _ in after} == {1}
        assert not any(spte & WRITABLE for _, _, spte in after)
        assert kvm.alloc.leaf_sptes[1] == 1024 and kvm.alloc.leaf_sptes[2] == 0
        for gfn in (3, 700, 3, 1023):
            v.access(gfn, write=True)
        v.access(5)
        assert get_dirty_log(kvm, 0) == [3, 700, 1023]
        assert get_dirty_log(kvm, 0) == []
        assert not any(spte & WRITABLE for _, _, spte in leaves(v.root))
        v.access(700, write=True)                         # write-protected again: logged
        assert get_dirty_log(kvm, 0) == [700]
        assert slot.dirty == set()
        kvm.destroy()
        assert_torn_down(kvm)
    rt, _ = run(body)
    assert_no_reports(rt)
