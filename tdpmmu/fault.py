"""TDP page faults: the slow path under ``mmu_lock`` for read, and the lockless fast path.

Kernel counterpart: ``direct_page_fault()``/``kvm_tdp_mmu_map()`` and
``is_page_fault_stale()`` (arch/x86/kvm/mmu/mmu.c, tdp_mmu.c), and
``fast_page_fault()`` with ``kvm_tdp_mmu_fast_pf_get_last_sptep()``, which
walk the paging structure under ``rcu_read_lock()`` only — the reason
page-table pages are freed through RCU.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import ksync
from ksync import rcu_read_lock, rcu_read_unlock

from .memslot import KVM_MEM_READONLY
from .pagetable import InstallStatus, install_leaf, walk_to
from .spte import DIRTY, PRESENT, WRITABLE, gfn_round_for_level, is_leaf, spte_pfn

if TYPE_CHECKING:
    from .vcpu import Vcpu

FIXED, RETRY, MMIO = "fixed", "retry", "mmio"


def is_page_fault_stale(vcpu: Vcpu, seq: int) -> bool:
    """Kernel: is_page_fault_stale() — the root went away or the host is invalidating."""
    kvm = vcpu.kvm
    root = vcpu.root
    if root is None or root.invalid or vcpu.root_gen != kvm.mmu_valid_gen:
        return True
    return kvm.mmu_invalidate_in_progress > 0 or kvm.mmu_invalidate_seq != seq


def page_fault(vcpu: Vcpu, gfn: int, write: bool) -> str:
    """Handle an EPT violation on ``gfn``; FIXED, RETRY (re-enter and fault again) or MMIO.

    Context: a vCPU thread outside guest mode, no locks held.
    """
    kvm = vcpu.kvm
    slot = kvm.memslots[vcpu.as_id].find(gfn)
    if slot is None:
        return MMIO
    kvm.stats.count("faults")
    seq = kvm.mmu_invalidate_seq
    level = slot.max_level_for(gfn, 3)
    if level > 1 and kvm.host.remap:
        level = 1                       # the host no longer backs it contiguously
    base = gfn_round_for_level(gfn, level)
    pfn = kvm.host.gfn_to_pfn(slot, base)
    # Dirty logging write-protects: only a write fault maps the page writable.
    writable = not slot.flags & KVM_MEM_READONLY and (write or not slot.dirty_logging)
    t0 = time.perf_counter_ns()
    kvm.mmu_lock.read_lock()
    kvm.stats.note_lock_wait(vcpu.name, time.perf_counter_ns() - t0)
    try:
        if is_page_fault_stale(vcpu, seq):
            kvm.stats.count("fault_retries")
            return RETRY
        ksync.check_access(vcpu.root, "spt")
        rcu_read_lock()
        try:
            status = install_leaf(vcpu.root.page, base, level, pfn, writable, True,
                                  kvm.alloc, on_free_page=kvm.free_sp)
        finally:
            rcu_read_unlock()
    finally:
        kvm.mmu_lock.read_unlock()
    if status is InstallStatus.RETRY:
        kvm.stats.count("fault_retries")
        return RETRY
    if write and slot.dirty_logging:
        slot.dirty.add(gfn)
    return FIXED


def fast_page_fault(vcpu: Vcpu, gfn: int) -> bool:
    """Fix a write-protection fault without ``mmu_lock``.  Kernel: fast_page_fault().

    Walks the vCPU's root under RCU only and sets the writable and dirty
    bits with a compare-exchange.  True when fixed; False sends the caller
    to the slow path.
    """
    kvm = vcpu.kvm
    root = vcpu.root
    slot = kvm.memslots[vcpu.as_id].find(gfn)
    if root is None or slot is None or slot.flags & KVM_MEM_READONLY:
        return False
    watch = kvm.alloc.watch
    rcu_read_lock()
    try:
        path = walk_to(root.page, gfn)
        if watch:
            for page, _i in path:
                ksync.check_access(page, "fast_page_fault walk")
        page, i = path[-1]
        old = page.read(i)
        if not old & PRESENT or not is_leaf(old, page.level) or old & WRITABLE:
            return False
        if not page.cmpxchg(i, old, old | WRITABLE | DIRTY):
            return False
    finally:
        rcu_read_unlock()
    if slot.dirty_logging:
        slot.dirty.add(gfn)
    return True


def translate(vcpu: Vcpu, gfn: int) -> tuple[int, bool] | None:
    """What the hardware page walker finds for ``gfn``: (pfn, writable) or None.

    Kernel counterpart: none — this is the CPU walking the EPT tables.
    Context: the vCPU is in guest mode (its mode lock held), so nobody can
    free the pages it walks until it leaves.
    """
    root = vcpu.root
    if root is None:
        return None
    path = walk_to(root.page, gfn)
    page, i = path[-1]
    spte = page.read(i)
    if not spte & PRESENT or not is_leaf(spte, page.level):
        return None
    offset = gfn - gfn_round_for_level(gfn, page.level)
    return spte_pfn(spte) + offset, bool(spte & WRITABLE)
