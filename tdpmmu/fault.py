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
from .pagetable import InstallStatus, SPPage, install_leaf
from .spte import (
    DIRTY,
    PG_LEVEL_4K,
    PRESENT,
    SPTE_INDEX,
    WRITABLE,
    gfn_round_for_level,
    is_leaf,
    spte_pfn,
)
from .zapper import note_spte_writes

if TYPE_CHECKING:
    from .root import Root
    from .vcpu import Vcpu

FIXED, RETRY, MMIO = "fixed", "retry", "mmio"


def is_page_fault_stale(vcpu: Vcpu, seq: int) -> bool:
    """Kernel: is_page_fault_stale() — the root went away or the host is invalidating."""
    kvm = vcpu.kvm
    root = vcpu.root
    if root is None:
        return True
    # Checked under mmu_lock: invalidation takes it for write, so a root seen
    # valid here stays valid until the fault has installed its SPTE.
    if (root.invalid or vcpu.root_gen != kvm.mmu_valid_gen) and \
            not kvm.bug("fault-on-invalid-root"):
        return True
    return kvm.mmu_invalidate_in_progress > 0 or kvm.mmu_invalidate_seq != seq


def page_fault(vcpu: Vcpu, gfn: int, write: bool) -> str:
    """Handle an EPT violation on ``gfn``; FIXED, RETRY (re-enter and fault again) or MMIO.

    Context: a vCPU thread outside guest mode, no locks held.
    """
    kvm = vcpu.kvm
    slot = kvm.memslots[vcpu.as_id].find(gfn)
    if slot is None or (write and slot.flags & KVM_MEM_READONLY):
        return MMIO           # userspace handles it (KVM_EXIT_MMIO)
    kvm.stats.count("faults")
    if slot.invalid:
        # Kernel: kvm_faultin_pfn() on a KVM_MEMSLOT_INVALID slot — retry
        # until the memslot update that is deleting or moving it completes.
        kvm.stats.count("fault_retries")
        return RETRY
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
        zapped: list[bool] = []
        rcu_read_lock()
        try:
            status = install_leaf(vcpu.root.page, base, level, pfn, writable, True,
                                  kvm.alloc, on_free_page=kvm.free_sp,
                                  on_zap=lambda: zapped.append(True))
        finally:
            rcu_read_unlock()
        note_spte_writes(vcpu.root, atomic=True)
        if zapped:
            # A huge mapping was replaced by a table, or a table by a huge
            # mapping: other vCPUs may cache the old translation.
            kvm.flush_remote_tlbs()
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
    rcu_read_lock()
    try:
        page, i, old = lockless_walk(vcpu, root, gfn, "fast_page_fault walk")
        if not old & PRESENT or not is_leaf(old, page.level) or old & WRITABLE:
            return False
        if not page.cmpxchg(i, old, old | WRITABLE | DIRTY):
            return False
        note_spte_writes(root, atomic=True)
    finally:
        rcu_read_unlock()
    if slot.dirty_logging:
        slot.dirty.add(gfn)
    return True


def lockless_walk(vcpu: Vcpu, root: Root, gfn: int, what: str) -> tuple[SPPage, int, int]:
    """Walk ``root`` towards ``gfn`` with no lock: (page, index, spte) where it stopped.

    Kernel: kvm_tdp_mmu_fast_pf_get_last_sptep() / the CPU's page walker.
    Context: inside an RCU read section.  Each step down is a scheduling
    point (the walk is not atomic against zaps) followed by an instrumented
    access to the page stepped into, so a page freed under the walker
    (no grace period) is reported as a use-after-free.
    """
    t = ksync.current_thread()
    rt = t.rt
    watch = vcpu.kvm.alloc.watch
    ksync.check_access(root, what)
    page = root.page
    while True:
        i = SPTE_INDEX(gfn, page.level)
        spte = page.read(i)
        if page.level == PG_LEVEL_4K or not spte & PRESENT or is_leaf(spte, page.level):
            return page, i, spte
        child = page.child_at(i, spte)
        if child is None:
            return page, i, 0          # unlinked since read: treat as a hole
        rt.point(t)
        if watch:
            ksync.check_access(child, what)
        page = child


def translate(vcpu: Vcpu, gfn: int) -> tuple[int, bool] | None:
    """What the hardware page walker finds for ``gfn``: (pfn, writable) or None.

    Kernel counterpart: none — this is the CPU walking the EPT tables, with
    no KVM lock.  Context: the vCPU is in guest mode (its mode lock held).
    The walk is an RCU reader: in the kernel a page table unlinked under a
    walking CPU is not freed before the TLB flush that waits for that CPU to
    leave guest mode, and the zapper's RCU-sched section (``mmu_lock`` is a
    spinning lock) holds the grace period until then.  Every page walked is
    an instrumented access, so a page-table page (or root) already freed is
    a use-after-free report.
    """
    root = vcpu.root
    if root is None:
        return None
    rcu_read_lock()
    try:
        page, _i, spte = lockless_walk(vcpu, root, gfn, "guest page walk")
        # Read inside the read section: once it ends the page may be freed.
        level = page.level
    finally:
        rcu_read_unlock()
    if not spte & PRESENT or not is_leaf(spte, level):
        return None
    offset = gfn - gfn_round_for_level(gfn, level)
    return spte_pfn(spte) + offset, bool(spte & WRITABLE)
