"""VM-wide MMU operations: memslot changes, the fast zap, host invalidations, dirty logging.

Kernel counterparts: ``__kvm_set_memory_region()`` and
``kvm_arch_flush_shadow_memslot()`` (virt/kvm/kvm_main.c, x86.c),
``kvm_mmu_zap_all_fast()``, ``kvm_mmu_slot_apply_flags()``
(arch/x86/kvm/mmu/mmu.c), and the MMU notifier's
``kvm_mmu_notifier_invalidate_range_start/end`` with ``kvm_unmap_gfn_range``
→ ``kvm_tdp_mmu_unmap_gfn_range``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ksync import lockdep_assert_held, rcu_read_lock, rcu_read_unlock

from .memslot import KVM_MEM_LOG_DIRTY_PAGES, Memslot
from .pagetable import iter_leaf_mappings, split_huge_pages, walk_to, write_protect_range
from .root import for_each_root_yield_safe, invalidate_all_roots, zap_invalidated_roots
from .spte import PRESENT, WRITABLE, is_leaf, spte_pfn
from .vcpu import KVM_REQ_MMU_FREE_OBSOLETE_ROOTS
from .zapper import IterYield, note_spte_writes, zap_gfn_range

if TYPE_CHECKING:
    from .kvm import Kvm


def set_memory_region(kvm: Kvm, slot_id: int, base_gfn: int, npages: int, flags: int = 0,
                      as_id: int = 0) -> Memslot | None:
    """Create, move, delete (``npages == 0``) or change the flags of a memslot.

    Kernel: kvm_set_memory_region() — takes ``slots_lock``; deleting or
    moving a slot zaps everything with the fast zap first.
    """
    kvm.check_alive("set_memory_region")
    if as_id not in (0, 1):
        raise ValueError(f"{kvm.name}: address space {as_id} does not exist (0 or 1)")
    if npages < 0 or base_gfn < 0:
        raise ValueError(f"{kvm.name}: memslot {slot_id}: negative base {base_gfn} or "
                         f"size {npages}")
    with kvm.slots_lock:
        slots = kvm.memslots[as_id]
        old = slots.get(slot_id)
        if old is None:
            if npages == 0:
                raise ValueError(f"{kvm.name}: deleting memslot {slot_id}, which does not exist")
            slot = Memslot(slot_id, as_id, base_gfn, npages, flags,
                           host_base=kvm.host.back_slot(npages))
            slots.add(slot)
            return slot
        if npages == 0:
            # Kernel: kvm_invalidate_memslot() — faults on the slot retry
            # from now on, so none can map it again behind the zap.
            old.invalid = True
            kvm_mmu_zap_all_fast(kvm)
            slots.remove(old)
            return None
        if npages != old.npages:
            raise ValueError(f"{kvm.name}: memslot {slot_id} cannot change size "
                             f"({old.npages} -> {npages} pages)")
        if base_gfn != old.base_gfn:
            slots.check_move(old, base_gfn)
            old.invalid = True
            kvm_mmu_zap_all_fast(kvm)
            slots.move(old, base_gfn)
            old.invalid = False
        if flags != old.flags:
            was = old.flags
            old.flags = flags
            slot_apply_flags(kvm, old, was)
        return old


def kvm_mmu_zap_all_fast(kvm: Kvm) -> None:
    """Kernel: kvm_mmu_zap_all_fast().  Context: ``slots_lock`` held.

    Under ``mmu_lock`` for write: bump the generation, invalidate every root,
    and ask every vCPU to drop obsolete roots.  The zap of the invalidated
    roots happens after the lock is dropped: the worker needs it.
    """
    lockdep_assert_held(kvm.slots_lock)
    kvm.mmu_lock.write_lock()
    try:
        kvm.mmu_valid_gen += 1
        invalidate_all_roots(kvm)
        kvm.make_all_cpus_request(KVM_REQ_MMU_FREE_OBSOLETE_ROOTS)
        if kvm.bug("flush-under-mmu-lock"):
            zap_invalidated_roots(kvm)
    finally:
        kvm.mmu_lock.write_unlock()
    if not kvm.bug("flush-under-mmu-lock"):
        zap_invalidated_roots(kvm)


def mmu_notifier_invalidate_range(kvm: Kvm, as_id: int, start: int, end: int) -> int:
    """The host unmaps and frees the pages behind gfns [start, end) of address space ``as_id``.

    Kernel: invalidate_range_start (``kvm_unmap_gfn_range`` under
    ``mmu_lock`` for write, every root — valid or not — then a TLB flush),
    the host freeing the pages, and invalidate_range_end.  Returns host
    pages freed.  After it returns no SPTE in any root maps the range
    (invariant 10); a stale one is reported when its later zap touches the
    freed page.
    """
    kvm.check_alive("mmu_notifier_invalidate_range")
    if start >= end:
        return 0
    kvm.mmu_lock.write_lock()
    try:
        kvm.mmu_invalidate_in_progress += 1
        flush = False
        only_valid = kvm.bug("skip-invalid-roots-on-notifier")
        if kvm.bug("notifier-unmap-without-root-ref"):
            # The bug (5.15): the plain list walk holds no reference, yet the
            # zap may drop mmu_lock, during which the root can be freed.
            roots = [r for r in kvm.tdp_mmu_roots if r.role.as_id == as_id]
        else:
            roots = for_each_root_yield_safe(kvm, shared=False, only_valid=only_valid,
                                             as_id=as_id)
        for root in roots:
            flush = zap_gfn_range(kvm, root, start, end, shared=False, flush=flush) or flush
        if flush:
            kvm.flush_remote_tlbs()
    finally:
        kvm.mmu_lock.write_unlock()
    freed = 0
    for slot in kvm.memslots[as_id]:
        if slot.base_gfn < end and start < slot.end_gfn:
            freed += kvm.host.free_range(slot, start, end)
    kvm.mmu_lock.write_lock()
    try:
        kvm.mmu_invalidate_seq += 1
        kvm.mmu_invalidate_in_progress -= 1
        _touch_stale_mappings(kvm, as_id, start, end)
    finally:
        kvm.mmu_lock.write_unlock()
    return freed


def _touch_stale_mappings(kvm: Kvm, as_id: int, start: int, end: int) -> None:
    """Any SPTE still mapping a freed page will be zapped later, and that zap
    marks the page accessed/dirty (kernel: handle_changed_spte ->
    kvm_set_pfn_accessed): an access to freed memory, reported now."""
    for root in list(kvm.tdp_mmu_roots):
        if root.role.as_id != as_id or root.freed:
            continue
        for gfn, _level, spte in iter_leaf_mappings(root.page, start, end):
            kvm.host.access(spte_pfn(spte), gfn, write=True)


def slot_apply_flags(kvm: Kvm, slot: Memslot, old_flags: int) -> None:
    """Kernel: kvm_mmu_slot_apply_flags() — enabling dirty logging write-protects
    the slot and splits its huge pages, under ``mmu_lock`` for read.

    Afterwards every mapping of the slot is a 4K, write-protected SPTE, so
    every write faults (fast path) and is logged.
    """
    if not (slot.flags & KVM_MEM_LOG_DIRTY_PAGES) or old_flags & KVM_MEM_LOG_DIRTY_PAGES:
        return
    kvm.mmu_lock.read_lock()
    try:
        for root in for_each_root_yield_safe(kvm, shared=True, only_valid=True,
                                             as_id=slot.as_id):
            y = IterYield(kvm, shared=True)
            rcu_read_lock()
            try:
                split_huge_pages(root.page, slot.base_gfn, slot.end_gfn, kvm.alloc,
                                 shared=True, should_yield=y)
                write_protect_range(root.page, slot.base_gfn, slot.end_gfn, shared=True,
                                    should_yield=y)
            finally:
                rcu_read_unlock()
            y.finish()
    finally:
        kvm.mmu_lock.read_unlock()
    kvm.flush_remote_tlbs()


def get_dirty_log(kvm: Kvm, slot_id: int, as_id: int = 0) -> list[int]:
    """Return and reset the dirty gfns of a slot, write-protecting them again.

    Kernel: KVM_GET_DIRTY_LOG -> kvm_get_dirty_log_protect(): under
    ``slots_lock``, take the dirty bitmap and, with ``mmu_lock`` held for
    write, write-protect what it names in every root of the address space
    (kvm_tdp_mmu_clear_dirty_pt_masked walks valid and invalid roots);
    then flush remote TLBs so the next write to those pages faults.
    """
    kvm.check_alive("get_dirty_log")
    if as_id not in (0, 1):
        raise ValueError(f"{kvm.name}: address space {as_id} does not exist (0 or 1)")
    with kvm.slots_lock:
        slot = kvm.memslots[as_id].get(slot_id)
        if slot is None:
            raise ValueError(f"{kvm.name}: no memslot {slot_id} in address space {as_id}")
        if not slot.dirty_logging:
            raise ValueError(f"{kvm.name}: memslot {slot_id} does not log dirty pages "
                             "(set KVM_MEM_LOG_DIRTY_PAGES first)")
        dirty = sorted(slot.dirty)
        slot.dirty.difference_update(dirty)
        if dirty:
            kvm.mmu_lock.write_lock()
            try:
                for root in list(kvm.tdp_mmu_roots):
                    if root.role.as_id != as_id:
                        continue
                    rcu_read_lock()
                    try:
                        if kvm.bug("plain-store-of-volatile-spte"):
                            _wrprot_plain(root, dirty)
                        else:
                            # Atomic even under the write lock: a fast page
                            # fault may set W/D in these SPTEs without mmu_lock.
                            note_spte_writes(root, atomic=True)
                            for lo, hi in _runs(dirty):
                                write_protect_range(root.page, lo, hi, shared=False)
                    finally:
                        rcu_read_unlock()
            finally:
                kvm.mmu_lock.write_unlock()
            kvm.flush_remote_tlbs()
    return dirty


def _wrprot_plain(root, gfns: list[int]) -> None:
    """The ``plain-store-of-volatile-spte`` bug: write-protect each gfn's leaf with a
    read and a plain store (kernel before 5.19: WRITE_ONCE under the write lock),
    which loses a writable/dirty update a lockless fast page fault makes between them."""
    note_spte_writes(root, atomic=False)
    for gfn in gfns:
        page, i = walk_to(root.page, gfn)[-1]
        old = page.read(i)
        if old & PRESENT and is_leaf(old, page.level):
            page.write(i, old & ~WRITABLE)


def _runs(gfns: list[int]) -> list[tuple[int, int]]:
    """Sorted gfns as [lo, hi) runs of consecutive gfns."""
    out: list[tuple[int, int]] = []
    for g in gfns:
        if out and out[-1][1] == g:
            out[-1] = (out[-1][0], g + 1)
        else:
            out.append((g, g + 1))
    return out
