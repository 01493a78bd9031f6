"""vCPUs and faults: mapping levels, retries on stale roots, the fast path, guest accesses.

A guest access walks the vCPU's root with no lock, as the CPU does; the
use-after-free checker must see it touch a freed host page or page table.
"""

from __future__ import annotations

import pytest

import ksync
from tdpmmu import (
    KVM_MEM_LOG_DIRTY_PAGES,
    KVM_MEM_READONLY,
    Kvm,
    kvm_mmu_zap_all_fast,
    mmu_notifier_invalidate_range,
    set_memory_region,
)
from tdpmmu import fault as faultmod
from tdpmmu.pagetable import iter_leaf_mappings, walk_to
from tdpmmu.spte import DIRTY, WRITABLE
from tdpmmu.vcpu import KVM_REQ_MMU_FREE_OBSOLETE_ROOTS, KVM_REQ_TLB_FLUSH

from .vm_helpers import ZAPS, assert_no_reports, assert_torn_down, run, titles

pytestmark = pytest.mark.timeout(60)


def leaves(root):
    return [(gfn, level, spte) for gfn, level, spte in iter_leaf_mappings(root.page)]


# ------------------------------------------------------------------ mapping levels
@pytest.mark.parametrize("base, npages, level", [
    (1, 600, 1),              # misaligned: 4K only
    (0, 1024, 2),             # 2M-aligned: 2M leaves
    (0, 1 << 18, 3),          # a whole 1G: one 1G leaf
])
def test_a_fault_maps_the_largest_level_the_memslot_allows(base, npages, level):
    def body(rt):
        kvm = Kvm()
        set_memory_region(kvm, 0, base, npages)
        v = kvm.create_vcpu()
        assert v.access(base + 5, write=True)
        [(gfn, lvl, spte)] = leaves(v.root)
        assert lvl == level and gfn <= base + 5 and spte & WRITABLE
        assert kvm.alloc.leaf_sptes[level] == 1
        kvm.destroy()
        assert_torn_down(kvm)
    rt, _ = run(body)
    assert_no_reports(rt)


def test_dirty_logging_maps_4k_read_only_on_read_and_writable_and_logged_on_write():
    def body(rt):
        kvm = Kvm()
        slot = set_memory_region(kvm, 0, 0, 1024, KVM_MEM_LOG_DIRTY_PAGES)
        v = kvm.create_vcpu()
        v.access(3)
        v.access(4, write=True)
        by_gfn = {gfn: (lvl, spte) for gfn, lvl, spte in leaves(v.root)}
        assert by_gfn[3][0] == by_gfn[4][0] == 1
        assert not by_gfn[3][1] & WRITABLE and by_gfn[4][1] & WRITABLE
        assert slot.dirty == {4}
        kvm.destroy()
    rt, _ = run(body)
    assert_no_reports(rt)


def test_a_write_fast_path_fixes_a_write_protected_spte_and_logs_it():
    def body(rt):
        kvm = Kvm()
        slot = set_memory_region(kvm, 0, 0, 64, KVM_MEM_LOG_DIRTY_PAGES)
        v = kvm.create_vcpu()
        v.access(7)
        faults = kvm.stats.faults
        v.access(7, write=True)              # read-only SPTE present: fast path
        assert kvm.stats.faults == faults    # no slow fault under mmu_lock
        page, i = walk_to(v.root.page, 7)[-1]
        assert page.read(i) & (WRITABLE | DIRTY) == WRITABLE | DIRTY
        assert slot.dirty == {7}
        kvm.destroy()
    rt, _ = run(body)
    assert_no_reports(rt)


def test_accesses_outside_memslots_and_writes_to_read_only_slots_exit_as_mmio():
    def body(rt):
        kvm = Kvm()
        set_memory_region(kvm, 0, 10, 10, KVM_MEM_READONLY)
        v = kvm.create_vcpu()
        assert v.access(3) is False                 # no memslot
        assert v.access(12) is True                 # read of a read-only slot
        assert v.access(12, write=True) is False    # write: KVM_EXIT_MMIO
        assert v.touch(8, 6) == 4
        kvm.destroy()
    rt, _ = run(body)
    assert_no_reports(rt)


# ------------------------------------------------------------------ stale faults
@pytest.mark.parametrize("zap", ZAPS)
def test_a_fault_on_an_invalid_root_is_abandoned_and_retried_after_the_reload(zap):
    def body(rt):
        kvm = Kvm(zap=zap)
        set_memory_region(kvm, 0, 1, 100)
        v = kvm.create_vcpu()
        v.access(1)
        old = v.root
        with kvm.slots_lock:
            kvm_mmu_zap_all_fast(kvm)
        assert old.invalid
        retries = kvm.stats.fault_retries
        assert faultmod.page_fault(v, 2, False) == faultmod.RETRY
        assert kvm.stats.fault_retries == retries + 1
        assert not leaves(old)                      # nothing installed in the old root
        assert v.access(2)                          # request handled: new root
        assert v.root is not old and [g for g, _, _ in leaves(v.root)] == [2]
        kvm.destroy()
        assert_torn_down(kvm)
    rt, _ = run(body)
    assert_no_reports(rt)


def test_a_fault_on_a_memslot_being_deleted_retries():
    def body(rt):
        kvm = Kvm()
        slot = set_memory_region(kvm, 0, 1, 100)
        v = kvm.create_vcpu()
        v.mmu_load()
        slot.invalid = True                 # as set_memory_region does while deleting
        assert faultmod.page_fault(v, 2, True) == faultmod.RETRY
        slot.invalid = False
        assert faultmod.page_fault(v, 2, True) == faultmod.FIXED
        kvm.destroy()
    rt, _ = run(body)
    assert_no_reports(rt)


# ------------------------------------------------------------------ requests
def test_requests_are_bits_that_do_not_carry_into_each_other():
    def body(rt):
        kvm = Kvm()
        v = kvm.create_vcpu()
        v.make_request(KVM_REQ_MMU_FREE_OBSOLETE_ROOTS)
        v.make_request(KVM_REQ_MMU_FREE_OBSOLETE_ROOTS)
        v.make_request(KVM_REQ_TLB_FLUSH)
        assert v.requests.peek() == KVM_REQ_MMU_FREE_OBSOLETE_ROOTS | KVM_REQ_TLB_FLUSH
        v.check_requests()
        assert v.requests.peek() == 0
        kvm.destroy()
    rt, _ = run(body)
    assert_no_reports(rt)


def test_an_unknown_guest_operation_names_the_vcpu():
    def body(rt):
        kvm = Kvm()
        v = kvm.create_vcpu()
        with pytest.raises(ValueError, match="vcpu-0: unknown guest operation"):
            v.run([("jump",)])
        kvm.destroy()
    run(body, checks=())


# ------------------------------------------------------------------ who pays for the zap
@pytest.mark.parametrize("zap", ZAPS)
def test_which_thread_zaps_the_root_a_vcpu_drops_last(zap):
    def body(rt):
        kvm = Kvm(zap=zap)
        set_memory_region(kvm, 0, 1, 2000)
        v = kvm.create_vcpu()
        t = rt.spawn(v.run, [("touch", 1, 300, True), ("reload",), ("touch", 1, 1)],
                     name=v.name)
        rt.join(t)
        zappers = dict(kvm.stats.zap_ns)
        calls = {c for (_, c) in kvm.stats.block_ns}
        assert {"mmu_load", "mmu_unload", "page_fault"} <= calls
        kvm.destroy()
        return zappers
    rt, zappers = run(body)
    assert_no_reports(rt)
    if zap == "sync":
        assert list(zappers) == ["vcpu-0"]        # the vCPU blocked for the whole zap
    elif zap == "async":
        assert zappers and "vcpu-0" not in zappers  # it only queued a work item
    else:
        assert zappers == {}                       # the root was kept, not zapped


# ------------------------------------------------------------------ guest accesses and KASAN
def test_a_guest_access_through_a_stale_tlb_entry_to_a_freed_host_page_is_reported():
    def body(rt):
        kvm = Kvm()
        set_memory_region(kvm, 0, 1, 100)
        v = kvm.create_vcpu()
        v.access(5)
        stale = dict(v.tlb)
        mmu_notifier_invalidate_range(kvm, 0, 5, 6)   # zaps, flushes, host frees pfn
        assert not v.tlb
        v.tlb.update(stale)                           # a TLB flush that never happened
        v.access(5)
        v.tlb.clear()
        kvm.destroy()
    rt, _ = run(body)
    assert [r.kind for r in rt.reports] == ["use-after-free"], titles(rt)
    assert "host page" in rt.reports[0].title


def test_after_a_host_invalidation_the_guest_gets_a_fresh_page_without_reports():
    def body(rt):
        kvm = Kvm()
        set_memory_region(kvm, 0, 1, 100)
        v = kvm.create_vcpu()
        v.access(5, write=True)
        [(_, _, before)] = leaves(v.root)
        assert mmu_notifier_invalidate_range(kvm, 0, 5, 6) == 1
        assert not leaves(v.root)
        v.access(5, write=True)
        [(_, _, after)] = leaves(v.root)
        assert after != before
        kvm.destroy()
    rt, _ = run(body)
    assert_no_reports(rt)


@pytest.mark.parametrize("what", ["page table", "root"])
def test_a_guest_walk_touching_a_freed_page_table_or_root_is_reported(what):
    def body(rt):
        kvm = Kvm()
        set_memory_region(kvm, 0, 1, 100)
        v = kvm.create_vcpu()
        v.access(5)
        v.tlb.clear()
        if what == "root":
            ksync.kfree(v.root)
        else:
            page, _ = walk_to(v.root.page, 5)[-1]     # the 4K table, still linked
            ksync.kfree(page)
        with v.mode_lock:
            faultmod.translate(v, 5)
    rt, _ = run(body, checks=("uaf",))
    assert [r.kind for r in rt.reports] == ["use-after-free"], titles(rt)
    # The first touch of the freed page is reported: with attribute reads
    # seen, that may be the walk reading it before its check_access.
    (r,) = rt.reports
    assert r.data["object"].startswith("page table" if what == "page table" else "struct kvm_mmu_page")
    assert any("lockless_walk" in f for f in r.data["stack"]), r.text
