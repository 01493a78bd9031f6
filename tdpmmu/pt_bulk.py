"""Whole-tree bulk work: populating a root with 4K leaves, counting and listing leaves.

Kernel: no single counterpart.  populate_4k() builds the tree a guest leaves
behind once dirty logging has split all its memory to 4K (so benchmarks and
stall scenarios can build big roots fast); count_present() and
iter_leaf_mappings() are the checkers' view of what a root maps (invariant
10: after a host invalidation no SPTE maps the range).  Every leaf page is
handled with numpy, one Python step per 512 SPTEs.
"""

import numpy as np

from tdpmmu.spte import KVM_PAGES_PER_HPAGE as _pages
from tdpmmu.spte import (
    PFN_BITS,
    PG_LEVEL_4K,
    PRESENT,
    REMOVED_SPTE,
    SPTE_ENT_PER_PAGE,
    SPTE_INDEX,
    count_present_sptes,
    gfn_round_for_level,
    is_leaf,
    leaf_mask,
    make_leaf_sptes,
    present_mask,
    root_gfn_end,
)


def _ensure_table(root, gfn, level, alloc):
    """The page at ``level`` covering ``gfn``, creating tables with plain stores."""
    page = root
    while page.level > level:
        i = SPTE_INDEX(gfn, page.level)
        old = page.read(i)
        if old & PRESENT:
            if is_leaf(old, page.level):
                raise ValueError(f"populate_4k: gfn {gfn:#x} is mapped by a huge SPTE at "
                                 f"level {page.level}; split it first")
            page = page.children[i]
            continue
        if old == REMOVED_SPTE:
            raise RuntimeError(f"populate_4k: frozen SPTE at gfn {gfn:#x}: a zap is running "
                               "concurrently, but populate needs mmu_lock for write")
        child = alloc.alloc_page(page.level - 1, gfn_round_for_level(gfn, page.level))
        page.set_child(i, child)
        alloc.account_pages(child.level, 1)
        page = child
    return page


def populate_4k(root, start_gfn, npages, base_pfn, writable, alloc):
    """Map [start_gfn, start_gfn + npages) to base_pfn onward with 4K leaves.

    Kernel: no single counterpart; builds the tree a guest leaves behind once
    dirty logging has split everything to 4K, one numpy store per leaf page.
    Context: mmu_lock held for write (plain stores).  Cost: O(npages / 512)
    Python steps.  Existing 4K leaves in the range are overwritten; a huge
    leaf in the way raises ValueError.  Returns the number of SPTEs written.
    """
    if npages < 0:
        raise ValueError(f"populate_4k: negative npages {npages}")
    end = start_gfn + npages
    if start_gfn < 0 or end > root_gfn_end(root.level):
        raise ValueError(f"populate_4k: [{start_gfn:#x}, {end:#x}) outside the root's range")
    if base_pfn < 0 or base_pfn + npages > 1 << PFN_BITS:
        raise ValueError(f"populate_4k: pfns from {base_pfn:#x} do not fit in {PFN_BITS} bits")
    gfn = start_gfn
    l2_pages = _pages(2)
    while gfn < end:
        l2 = _ensure_table(root, gfn, 2, alloc)
        new_pages = added = 0
        for i2 in range(SPTE_INDEX(gfn, 2), SPTE_ENT_PER_PAGE):
            if gfn >= end:
                break
            chunk = gfn_round_for_level(gfn, 2)
            lo, hi = gfn - chunk, min(l2_pages, end - chunk)
            old = l2.read(i2)
            if old & PRESENT:
                if is_leaf(old, 2):
                    raise ValueError(f"populate_4k: gfn {gfn:#x} is mapped by a 2M SPTE; "
                                     "split it first")
                leaf = l2.children[i2]
                seg = leaf.spt[lo:hi]
                added -= count_present_sptes(seg)
                make_leaf_sptes(base_pfn + gfn - start_gfn, hi - lo, 1, writable, out=seg)
            else:
                spt = np.zeros(SPTE_ENT_PER_PAGE, dtype=np.uint64) if hi - lo < l2_pages \
                    else np.empty(SPTE_ENT_PER_PAGE, dtype=np.uint64)
                make_leaf_sptes(base_pfn + gfn - start_gfn, hi - lo, 1, writable,
                                out=spt[lo:hi])
                l2.set_child(i2, alloc.alloc_page(1, chunk, spt))
                new_pages += 1
            added += hi - lo
            gfn = chunk + hi
        alloc.account_pages(1, new_pages)
        alloc.account_leaves(1, added)
    return npages


def _entry_bounds(page, start, end):
    """Indexes [lo, hi) of the entries of ``page`` that meet [start, end)."""
    span = _pages(page.level)
    lo = max(0, (start - page.gfn) // span)
    hi = min(SPTE_ENT_PER_PAGE, -(-(end - page.gfn) // span))
    return lo, hi


def _table_spans(root, start, end):
    """Yield (page, entries) for every reachable page meeting [start, end).

    ``entries`` is a snapshot of the lanes that meet the range.
    Lock-free: a concurrent change may or may not be seen.  Unordered.
    """
    stack = [root]
    while stack:
        page = stack.pop()
        lo, hi = _entry_bounds(page, start, end)
        if lo >= hi:
            continue
        entries = page.spt[lo:hi].copy()
        yield page, entries
        if page.level == PG_LEVEL_4K:
            continue
        tables = np.flatnonzero(present_mask(entries) & ~leaf_mask(entries, page.level))
        for j in tables.tolist():
            child = page.child_at(lo + j, entries.item(j))
            if child is not None:
                stack.append(child)


def count_present(root, start=0, end=None):
    """Number of present leaf SPTEs (any level) that map a gfn in [start, end).

    A huge leaf counts once.  For tests and checkers.  Cost: one numpy pass per page visited.
    """
    end = root_gfn_end(root.level) if end is None else end
    if start >= end:
        return 0
    total = 0
    for page, entries in _table_spans(root, start, end):
        total += int(np.count_nonzero(leaf_mask(entries, page.level)))
    return total


def iter_leaf_mappings(root, start=0, end=None):
    """Yield (gfn, level, spte) for every present leaf meeting [start, end), in gfn order.

    A huge leaf is reported with its first gfn, which may lie before
    ``start``.  Invariant 10 holds for a range when this yields nothing.
    Lock-free, like count_present().
    """
    end = root_gfn_end(root.level) if end is None else end
    if start < end:
        yield from _leaf_mappings(root, start, end)


def _leaf_mappings(page, start, end):
    lo, hi = _entry_bounds(page, start, end)
    if lo >= hi:
        return
    span = _pages(page.level)
    entries = page.spt[lo:hi].copy()
    leaves = leaf_mask(entries, page.level)
    for j in np.flatnonzero(present_mask(entries)).tolist():
        if leaves[j]:
            yield page.gfn + (lo + j) * span, page.level, entries.item(j)
            continue
        child = page.child_at(lo + j, entries.item(j))
        if child is not None:
            yield from _leaf_mappings(child, start, end)
