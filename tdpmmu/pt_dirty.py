"""Page-table side of dirty logging: write-protecting ranges, splitting huge pages.

Kernel: wrprot_gfn_range() / kvm_tdp_mmu_wrprot_slot() and
tdp_mmu_split_huge_pages_root() / tdp_mmu_split_huge_page() /
kvm_tdp_mmu_try_split_huge_pages() in arch/x86/kvm/mmu/tdp_mmu.c.

When dirty logging starts, every writable mapping of the memslot loses its
WRITABLE bit (so the next write faults and is logged) and huge mappings are
split into 4K ones (so a write dirties 4K, not 2M).  Both walk the range with
the TDP iterator at the 2M level and handle 4K leaf pages in bulk with numpy.
Context: mmu_lock held for read (``shared=True``, compare-exchange) or write.
"""

import numpy as np

from tdpmmu.iter import TdpIter
from tdpmmu.spte import (
    ACCESSED,
    DIRTY,
    PG_LEVEL_2M,
    PG_LEVEL_4K,
    PRESENT,
    SPTE_ENT_PER_PAGE,
    WRITABLE,
    is_leaf,
    low_bytes,
    make_leaf_sptes,
    spte_pfn,
)

_NOT_WRITABLE = np.uint64(~WRITABLE & 0xFFFF_FFFF_FFFF_FFFF)


def _wrprot_leaf_slice(leaf_pt, lo, hi):
    """Clear WRITABLE on present 4K leaves in entries [lo, hi), atomically."""
    with leaf_pt.lock:
        seg = leaf_pt.spt[lo:hi]
        mask = (low_bytes(seg) & (PRESENT | WRITABLE)) == (PRESENT | WRITABLE)
        n = int(np.count_nonzero(mask))
        if n:
            np.bitwise_and(seg, _NOT_WRITABLE, out=seg, where=mask)
    return n


def write_protect_range(root, start, end, shared=False, should_yield=None):
    """Clear WRITABLE on every leaf mapping a gfn in [start, end).

    Kernel: wrprot_gfn_range().  A huge leaf sticking out of the range is
    write-protected whole.  Returns the number of SPTEs changed (nonzero
    means the caller owes a TLB flush).
    """
    changed = 0
    for pos in TdpIter(root, PG_LEVEL_2M, start, end):
        if pos.cond_resched(should_yield):
            continue
        while True:
            old, level = pos.old_spte, pos.level
            if not old & PRESENT:
                break
            if is_leaf(old, level):
                if not old & WRITABLE:
                    break
                if not shared:
                    pos.page.write(pos.index, old & ~WRITABLE)
                elif not pos.page.cmpxchg(pos.index, old, old & ~WRITABLE):
                    pos.reread()
                    continue
                changed += 1
            elif level == PG_LEVEL_2M:
                leaf_pt = pos.page.child_at(pos.index, old)
                if leaf_pt is not None:
                    changed += _wrprot_leaf_slice(leaf_pt, max(start, pos.gfn) - pos.gfn,
                                                  min(end, pos.gfn + SPTE_ENT_PER_PAGE)
                                                  - pos.gfn)
            break
    return changed


def _build_split_page(huge_spte, level, gfn, alloc):
    """A private page of 512 leaves at ``level - 1`` mapping what ``huge_spte`` mapped.

    Kernel: tdp_mmu_init_child_sp() plus the make_huge_page_split_spte() loop.
    """
    spt = np.empty(SPTE_ENT_PER_PAGE, dtype=np.uint64)
    make_leaf_sptes(spte_pfn(huge_spte), SPTE_ENT_PER_PAGE, level - 1,
                    bool(huge_spte & WRITABLE), accessed=bool(huge_spte & ACCESSED),
                    dirty=bool(huge_spte & DIRTY), out=spt)
    return alloc.alloc_page(level - 1, gfn, spt)


def split_huge_pages(root, start, end, alloc, target_level=PG_LEVEL_4K, shared=False,
                     should_yield=None):
    """Split every huge leaf meeting [start, end) down to ``target_level``.

    Kernel: tdp_mmu_split_huge_pages_root().  Each huge leaf is replaced by a
    page of 512 leaves one level down (linked with compare-exchange when
    shared; a lost race discards the new page and re-reads); the walk then
    descends into that page and splits the pieces that meet the range, so a
    1G leaf inside the range ends as 512 pages of 4K leaves.  The mappings
    (pfns and permission bits) are unchanged.  Returns the number of huge
    SPTEs split.
    """
    split = 0
    for pos in TdpIter(root, target_level + 1, start, end):
        if pos.cond_resched(should_yield):
            continue
        while True:
            old, level = pos.old_spte, pos.level
            if level == PG_LEVEL_4K or not is_leaf(old, level):
                break
            child = _build_split_page(old, level, pos.gfn, alloc)
            if not shared:
                pos.page.set_child(pos.index, child)
            elif not pos.page.link_child(pos.index, old, child):
                alloc.discard(child)
                pos.reread()
                continue
            alloc.account_pages(level - 1, 1)
            alloc.account_leaves(level, -1)
            alloc.account_leaves(level - 1, SPTE_ENT_PER_PAGE)
            split += 1
            break
    return split
