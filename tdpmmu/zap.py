"""Zapping: removing SPTEs and tearing down the page tables under them.

Kernel: tdp_mmu_zap_root(), __tdp_mmu_zap_root(), tdp_mmu_zap_leafs()
(zap_gfn_range() before 5.18), tdp_mmu_zap_spte_atomic(),
handle_removed_pt() and handle_changed_spte() in arch/x86/kvm/mmu/tdp_mmu.c.

Removing one SPTE under ``mmu_lock`` held for read (``shared=True``) is three
steps: compare-exchange it from the value last read to REMOVED_SPTE (a racing
fault that changed it makes this fail, and the caller re-reads and retries),
handle what it pointed to, then store the final value.  While it is frozen no
one else may overwrite it, which is what lets the freezer detach the child
page and account for it without a lock.  Under the write lock plain stores do.

Removing a page table: the whole page is frozen in one atomic step
(``freeze_all``), each former entry is handled -- leaves counted, child
tables torn down recursively -- and the page is unaccounted and handed to
``on_free_page``, which the model points at call_rcu so lockless walkers
never see freed memory.  Children are freed before their parent.

Bulk: a 512-entry leaf page is never looped over in Python; present entries
are counted with one vectorised pass over its low bytes.

Yielding happens only between iterator positions, never inside the teardown
of one subtree, as in the kernel: the bound on one step is what the two-pass
zap_root() is for.
"""

from typing import NamedTuple

import numpy as np

from tdpmmu.iter import TdpIter
from tdpmmu.spte import KVM_PAGES_PER_HPAGE as _pages
from tdpmmu.spte import (
    PG_LEVEL_1G,
    PG_LEVEL_2M,
    PG_LEVEL_4K,
    PRESENT,
    REMOVED_SPTE,
    count_present_sptes,
    is_leaf,
    leaf_mask,
    present_mask,
    root_gfn_end,
)

# zap_range() removes a fully covered page table in one step only up to a 1G
# entry (at most 262,144 SPTEs), the same bound the two-pass zap_root() keeps.
_MAX_SUBTREE_LEVEL = PG_LEVEL_1G


class ZapResult(NamedTuple):
    """What a zap removed: present leaf SPTEs and page-table pages."""

    sptes: int
    pages: int


def _drop_page(page):
    pass


class _ZapCtx:
    """Running totals of one zap, with the accounting deltas not yet applied."""

    __slots__ = ("alloc", "shared", "on_free_page", "sptes", "pages", "pt_delta",
                 "leaf_delta")

    def __init__(self, alloc, shared, on_free_page):
        self.alloc = alloc
        self.shared = shared
        self.on_free_page = on_free_page if on_free_page is not None else _drop_page
        self.sptes = 0
        self.pages = 0
        self.pt_delta = [0] * 6
        self.leaf_delta = [0] * 6

    def flush(self):
        """Apply the accounting gathered since the last flush."""
        self.alloc.account_deltas(self.pt_delta, self.leaf_delta)
        self.pt_delta = [0] * 6
        self.leaf_delta = [0] * 6

    def result(self):
        return ZapResult(self.sptes, self.pages)


def _wait_and_freeze(pt, i, relax):
    """Freeze entry ``i`` of ``pt`` once its current freezer has let go.

    Another thread froze this entry before we froze the page; only it may
    write the entry, so wait for its final value and take that instead.
    """
    while True:
        if pt.read(i) != REMOVED_SPTE:
            old = pt.xchg(i, REMOVED_SPTE)
            if old != REMOVED_SPTE:
                return old
        relax()


def _handle_removed_pt(pt, ctx):
    """Tear down page table ``pt``, already unlinked from its parent.

    Kernel: handle_removed_pt().  Cost: O(1) numpy passes for a leaf page;
    one Python step per child table otherwise.
    """
    old = pt.freeze_all()
    level = pt.level
    nleaf = count_present_sptes(old)
    if ctx.shared and np.count_nonzero(old) != nleaf:
        # The only non-present nonzero value is REMOVED_SPTE: another thread
        # froze those entries before we froze the page, and still owns them.
        relax = pt.alloc.cpu_relax
        for i in np.flatnonzero(old == np.uint64(REMOVED_SPTE)).tolist():
            old[i] = _wait_and_freeze(pt, i, relax)
        nleaf = count_present_sptes(old)
    if level > PG_LEVEL_4K:
        huge = leaf_mask(old, level)
        nleaf = int(np.count_nonzero(huge))
        tables = np.flatnonzero(present_mask(old) & ~huge).tolist()
        children = pt.children
        for i in tables:
            child = children[i]
            children[i] = None
            if child is not None:
                _handle_removed_pt(child, ctx)
    ctx.sptes += nleaf
    ctx.leaf_delta[level] -= nleaf
    ctx.pt_delta[level] -= 1
    ctx.pages += 1
    pt.parent = None
    ctx.on_free_page(pt)


def _zap_spte(page, i, old, ctx):
    """Remove the present SPTE ``old`` at entry ``i``; False if it changed first.

    Kernel: tdp_mmu_zap_spte_atomic() (shared) / tdp_mmu_set_spte(.., 0).
    """
    if ctx.shared:
        if not page.cmpxchg(i, old, REMOVED_SPTE):
            return False
    else:
        page.write(i, REMOVED_SPTE)
    level = page.level
    if is_leaf(old, level):
        ctx.sptes += 1
        ctx.leaf_delta[level] -= 1
    else:
        # The entry is frozen, so no one can link a new child into this slot
        # between the detach and the final store.
        child = page.detach_child(i)
        if child is not None:
            _handle_removed_pt(child, ctx)
    if ctx.shared:
        # Through the page lock: a freeze_all() of this page by another
        # zapper must not lose the final value it is waiting for.
        page.xchg(i, 0)
    else:
        page.write(i, 0)
    ctx.flush()
    return True


def zap_spte(page, i, old, shared, on_free_page=None):
    """Remove one present SPTE (and any page table under it).

    Returns a ZapResult, or None when the entry no longer held ``old`` (the
    caller re-reads).  Context: mmu_lock held for read (``shared``) or write.
    """
    ctx = _ZapCtx(page.alloc, shared, on_free_page)
    if not _zap_spte(page, i, old, ctx):
        return None
    return ctx.result()


def _zap_root_pass(root, zap_level, ctx, should_yield):
    """Kernel: __tdp_mmu_zap_root()."""
    for pos in TdpIter(root, zap_level, 0, root_gfn_end(root.level), skip_absent=True):
        if pos.cond_resched(should_yield):
            continue
        while pos.old_spte & PRESENT and pos.level <= zap_level:
            if _zap_spte(pos.page, pos.index, pos.old_spte, ctx):
                break
            pos.reread()


def zap_root(root, shared, on_free_page=None, should_yield=None):
    """Remove every SPTE and page table under ``root`` (the root page stays).

    Kernel: tdp_mmu_zap_root().  Context: mmu_lock held for read
    (``shared=True``; faults may race and are handled with compare-exchange)
    or for write; the caller is in an RCU read section.

    Two passes: first every 1G-level entry, so no single step tears down more
    than one 1G subtree; then the top-level entries (whose subtrees are now
    empty tables, unless faults refilled them).  ``should_yield(False)`` is offered
    at each iterator position once progress was made; when it returns True
    (the model dropped and retook mmu_lock in it) the walk restarts from the
    root at the first unhandled gfn.  Freed pages go to ``on_free_page``.
    """
    ctx = _ZapCtx(root.alloc, shared, on_free_page)
    _zap_root_pass(root, PG_LEVEL_1G, ctx, should_yield)
    _zap_root_pass(root, root.level, ctx, should_yield)
    return ctx.result()


def _zap_leaf_slice(leaf_pt, lo, hi, ctx):
    """Clear the present 4K SPTEs in entries [lo, hi) of a leaf page, in bulk.

    Under the page lock the whole slice changes in one atomic step, which is
    equivalent to one successful compare-exchange per present entry.
    """
    with leaf_pt.lock:
        seg = leaf_pt.spt[lo:hi]
        mask = present_mask(seg)
        n = int(np.count_nonzero(mask))
        if n:
            seg[mask] = 0
    ctx.sptes += n
    if n:
        ctx.alloc.account_leaves(PG_LEVEL_4K, -n)


def zap_range(root, start, end, shared, on_free_page=None, should_yield=None):
    """Remove every mapping of [start, end) from ``root``.

    Kernel: tdp_mmu_zap_leafs() (5.18) / zap_gfn_range() (5.17), used for
    host invalidations and memslot deletion.  Context as zap_root().

    Leaves are removed whole even when they stick out of the range (a huge
    leaf over ``start``); page tables fully inside the range are torn down
    too, up to 1G entries; partly covered leaf pages are cleared with numpy
    slices.  Afterwards no SPTE of ``root`` maps a gfn in the range, unless a
    fault racing under the read lock mapped it again.  ``should_yield(flush)``
    is told whether SPTEs were removed since the last yield, so the caller
    can flush TLBs before it drops ``mmu_lock`` (kernel: the ``flush``
    argument of tdp_mmu_iter_cond_resched()).
    """
    ctx = _ZapCtx(root.alloc, shared, on_free_page)
    end = min(end, root_gfn_end(root.level))
    flushed_at = 0           # ctx.sptes when the last yield flushed TLBs
    for pos in TdpIter(root, PG_LEVEL_2M, start, end, skip_absent=True):
        if pos.cond_resched(should_yield, ctx.sptes > flushed_at):
            flushed_at = ctx.sptes
            continue
        while True:
            old, level = pos.old_spte, pos.level
            if not old & PRESENT:
                break
            covered = start <= pos.gfn and pos.gfn + _pages(level) <= end
            if is_leaf(old, level) or (covered and level <= _MAX_SUBTREE_LEVEL):
                if _zap_spte(pos.page, pos.index, old, ctx):
                    break
                pos.reread()
                continue
            if level == PG_LEVEL_2M:
                leaf_pt = pos.page.child_at(pos.index, old)
                if leaf_pt is not None:
                    _zap_leaf_slice(leaf_pt, max(start, pos.gfn) - pos.gfn,
                                    min(end, pos.gfn + _pages(level)) - pos.gfn, ctx)
            break
    return ctx.result()
