"""Page-table pages of the TDP MMU and the walks that build and inspect them.

A paging structure is a radix tree of ``SPPage`` objects, each holding 512
SPTEs in a numpy ``uint64`` array.  A root is an ``SPPage`` at level 4 (or 5)
with gfn 0; whoever owns the root (the model's Root object) holds its
refcount, role and invalid flag -- nothing here knows about them.

Atomicity.  Each page has a small ``threading.Lock``; every compare-exchange
and exchange on one of its entries, and the freezing of the whole page, runs
under it.  That lock models the hardware's atomic instructions, not a KVM
lock: it is never held across a walk and never nests.  Plain reads take no
lock (a lane read is one indivisible step under the GIL, like READ_ONCE).
Under ``mmu_lock`` held for write, nobody else writes SPTEs, so the
``shared=False`` paths use plain stores.

Reachability.  A non-leaf SPTE's child page is found through the parent's
``children`` list, never through a global table.  The slot is set before the
SPTE is published and cleared by the thread that froze the SPTE, before it
writes the final value, so a page that was unlinked cannot be reached again.

Accounting.  ``PageAllocator`` counts linked page-table pages by level
(kernel: kvm->arch.tdp_mmu_pages) and present leaf SPTEs by level (kernel:
kvm->stat.pages[]).  A page is accounted once linked and unaccounted when
torn down, so both counts return to zero after a full zap.

The zaps (``zap_root``, ``zap_range``) live in ``tdpmmu.zap``, the iterator
in ``tdpmmu.iter``, whole-tree bulk work (populate, count, list) in
``tdpmmu.pt_bulk`` and the dirty-logging operations in ``tdpmmu.pt_dirty``;
this module re-exports them so one import serves.
"""

import enum
import itertools
import threading
import time

import numpy as np

from tdpmmu.iter import TdpIter, for_each_tdp_pte_min_level
from tdpmmu.pt_bulk import count_present, iter_leaf_mappings, populate_4k
from tdpmmu.pt_dirty import split_huge_pages, write_protect_range
from tdpmmu.spte import (
    MAX_HUGE_LEVEL,
    PG_LEVEL_4K,
    PRESENT,
    REMOVED_SPTE,
    SPTE_ENT_PER_PAGE,
    SPTE_INDEX,
    gfn_round_for_level,
    is_leaf,
    make_leaf_spte,
    make_nonleaf_spte,
    root_gfn_end,
    spte_pfn,
)
from tdpmmu.zap import ZapResult, zap_range, zap_root, zap_spte

__all__ = [
    "InstallStatus", "PageAllocator", "SPPage", "TdpIter", "ZapResult", "count_present",
    "for_each_tdp_pte_min_level", "install_leaf", "iter_leaf_mappings", "populate_4k",
    "split_huge_pages", "walk_to", "write_protect_range", "zap_range", "zap_root",
    "zap_spte",
]


class SPPage:
    """One page of a TDP paging structure.

    Kernel: struct kvm_mmu_page (role.level, gfn, spt) in
    arch/x86/kvm/mmu/mmu_internal.h.

    Fields (I: set at allocation, read-only after; L: changed under ``lock``
    while the page is shared; F: changed only by the thread that froze the
    matching SPTE in the parent):
      level         I  level of the entries in this page (1 = 4K leaves)
      gfn           I  first gfn this page covers
      pfn           I  unique id, the pfn field of the SPTE that links it
      spt           L  512 SPTEs (numpy uint64); replaced wholesale by freeze_all()
      lock          I  makes cmpxchg/xchg/freeze atomic (hardware, not KVM)
      children      L  child page per non-leaf entry; None at level 1
      parent        F  page holding the SPTE that links this one, or None
      parent_index  F  index of that SPTE
      alloc         I  the PageAllocator that accounts this tree
    """

    # __weakref__ lets checkers watch pages for use-after-free without
    # keeping freed ones alive; it costs one pointer per 512 SPTEs.
    __slots__ = ("level", "gfn", "pfn", "spt", "lock", "children", "parent",
                 "parent_index", "alloc", "__weakref__")

    def __init__(self, level, gfn, pfn, alloc, spt=None):
        self.level = level
        self.gfn = gfn
        self.pfn = pfn
        self.spt = np.zeros(SPTE_ENT_PER_PAGE, dtype=np.uint64) if spt is None else spt
        self.lock = threading.Lock()
        self.children = [None] * SPTE_ENT_PER_PAGE if level > PG_LEVEL_4K else None
        self.parent = None
        self.parent_index = 0
        self.alloc = alloc

    def __repr__(self):
        return f"SPPage(level={self.level}, gfn={self.gfn:#x}, pfn={self.pfn})"

    def read(self, i):
        """Kernel: kvm_tdp_mmu_read_spte().  Lock-free."""
        return self.spt.item(i)

    def write(self, i, value):
        """Plain store to entry ``i``.

        Context: mmu_lock held for write (no other SPTE writer exists).  Under
        the read lock use cmpxchg()/xchg(): a plain store could be lost inside
        another thread's freeze_all().
        """
        self.spt[i] = value

    def cmpxchg(self, i, old, new):
        """Store ``new`` if entry ``i`` still holds ``old``; True on success.

        Kernel: try_cmpxchg64() in tdp_mmu_set_spte_atomic().
        """
        with self.lock:
            spt = self.spt
            if spt.item(i) != old:
                return False
            spt[i] = new
            return True

    def xchg(self, i, new):
        """Store ``new`` and return the previous value.  Kernel: xchg() on an SPTE."""
        with self.lock:
            spt = self.spt
            old = spt.item(i)
            spt[i] = new
            return old

    def link_child(self, i, old, child):
        """Point entry ``i`` at ``child`` if it still holds ``old``; True on success.

        Kernel: tdp_mmu_link_sp() with a compare-exchange.  The children slot is
        filled before the SPTE is published, so a walker that sees the SPTE
        finds the page.
        """
        child.parent = self
        child.parent_index = i
        with self.lock:
            spt = self.spt
            if spt.item(i) != old:
                return False
            self.children[i] = child
            spt[i] = make_nonleaf_spte(child.pfn)
            return True

    def set_child(self, i, child):
        """Plain-store form of link_child().  Context: mmu_lock held for write."""
        child.parent = self
        child.parent_index = i
        self.children[i] = child
        self.spt[i] = make_nonleaf_spte(child.pfn)

    def child_at(self, i, spte):
        """The page the non-leaf ``spte`` (read from entry ``i``) points at.

        None when that page was unlinked since ``spte`` was read: the caller
        treats it as a changed SPTE.  Lock-free.
        """
        child = self.children[i]
        if child is None or child.pfn != spte_pfn(spte):
            return None
        return child

    def detach_child(self, i):
        """Take the child page out of slot ``i``.  Context: the caller froze entry ``i``
        (or holds mmu_lock for write), so no one can link a new child there."""
        child = self.children[i]
        self.children[i] = None
        return child

    def freeze_all(self):
        """Exchange every entry to REMOVED_SPTE at once and return the old values.

        Kernel: the per-entry xchg() loop in handle_removed_pt(); here the page
        lock makes the whole page one atomic step.  The returned array is the
        page's former storage (no copy).
        """
        frozen = np.empty(SPTE_ENT_PER_PAGE, dtype=np.uint64)
        frozen.fill(REMOVED_SPTE)
        with self.lock:
            old = self.spt
            self.spt = frozen
        return old


class PageAllocator:
    """Allocates page-table pages and accounts pages and leaf SPTEs by level.

    Kernel: tdp_mmu_alloc_sp()/tdp_mmu_free_sp(), tdp_account_mmu_page()/
    tdp_unaccount_mmu_page() (kvm->arch.tdp_mmu_pages) and
    kvm_update_page_stats() (kvm->stat.pages[]).

    Thread-safety: every counter changes under ``_lock`` (kernel: atomic64);
    counts may dip below zero for an instant when a zap unaccounts a page a
    racing fault has linked but not yet accounted.  ``cpu_relax`` is called
    while waiting for another thread to finish with an SPTE it froze; the
    model substitutes a scheduling point of its runtime.
    """

    __slots__ = ("_lock", "_pfns", "pt_pages", "leaf_sptes", "allocated", "discarded",
                 "cpu_relax")

    def __init__(self, cpu_relax=None):
        self._lock = threading.Lock()
        self._pfns = itertools.count(1)
        self.pt_pages = [0] * 6
        self.leaf_sptes = [0] * 6
        self.allocated = 0
        self.discarded = 0
        self.cpu_relax = cpu_relax if cpu_relax is not None else _yield_cpu

    def alloc_root(self, level=4):
        """A root page (gfn 0).  Not accounted: the model's Root object owns it."""
        if level not in (4, 5):
            raise ValueError(f"alloc_root: root level must be 4 or 5, not {level}")
        return SPPage(level, 0, next(self._pfns), self)

    def alloc_page(self, level, gfn, spt=None):
        """A fresh, unlinked, unaccounted page table.  Kernel: tdp_mmu_alloc_sp()."""
        with self._lock:
            self.allocated += 1
        return SPPage(level, gfn, next(self._pfns), self, spt)

    def discard(self, page):
        """Free a page that was never linked (lost a link race).  Kernel: tdp_mmu_free_sp()."""
        with self._lock:
            self.discarded += 1

    def account_pages(self, level, n):
        """Add ``n`` (may be negative) linked page tables at ``level``."""
        with self._lock:
            self.pt_pages[level] += n

    def account_leaves(self, level, n):
        """Add ``n`` (may be negative) present leaf SPTEs at ``level``."""
        with self._lock:
            self.leaf_sptes[level] += n

    def account_deltas(self, pages, leaves):
        """Apply per-level delta lists in one step (bulk paths)."""
        with self._lock:
            for lvl in range(6):
                self.pt_pages[lvl] += pages[lvl]
                self.leaf_sptes[lvl] += leaves[lvl]

    @property
    def live_pages(self):
        """Linked page-table pages, roots excluded."""
        return sum(self.pt_pages)

    @property
    def live_leaves(self):
        """Present leaf SPTEs at all levels."""
        return sum(self.leaf_sptes)

    def stats(self):
        """A snapshot for reports and tests."""
        with self._lock:
            return {"pt_pages": list(self.pt_pages), "leaf_sptes": list(self.leaf_sptes),
                    "allocated": self.allocated, "discarded": self.discarded}


def _yield_cpu():
    time.sleep(0)


class InstallStatus(enum.Enum):
    """Outcome of install_leaf().  Kernel: RET_PF_FIXED / RET_PF_RETRY."""

    OK = "ok"
    RETRY = "retry"


def walk_to(root, gfn, target_level=PG_LEVEL_4K):
    """The (page, index) entries from ``root`` down towards ``target_level``.

    Kernel: kvm_tdp_mmu_get_walk() / tdp_mmu_for_each_pte().  Stops early at
    an entry that is not a present page-table link (so ``path[-1]`` is the
    leaf, the hole or the frozen entry that ended the walk).  Lock-free; the
    caller must keep freed pages alive as RCU would.
    """
    path = []
    page = root
    while True:
        i = SPTE_INDEX(gfn, page.level)
        path.append((page, i))
        if page.level <= target_level:
            return path
        spte = page.read(i)
        if not spte & PRESENT or is_leaf(spte, page.level):
            return path
        child = page.child_at(i, spte)
        if child is None:
            return path
        page = child


def _check_leaf_args(root, gfn, level):
    if not PG_LEVEL_4K <= level <= min(MAX_HUGE_LEVEL, root.level - 1):
        raise ValueError(f"install_leaf: level {level} cannot hold a leaf under a "
                         f"level-{root.level} root")
    if not 0 <= gfn < root_gfn_end(root.level):
        raise ValueError(f"install_leaf: gfn {gfn:#x} outside the root's range")


def install_leaf(root, gfn, level, pfn, writable, shared, alloc, on_free_page=None,
                 on_zap=None):
    """Map ``gfn`` (rounded to ``level``) to ``pfn`` with a leaf at ``level``.

    Kernel: kvm_tdp_mmu_map() and tdp_mmu_map_handle_target_level().
    Context: mmu_lock held for read (``shared=True``) or write.

    Missing page tables are allocated and linked on the way down; a huge leaf
    in the way of a smaller mapping is zapped first, and a page table where a
    huge leaf goes is torn down first (its pages go to ``on_free_page``, which
    the model points at call_rcu).  ``on_zap()`` is called after each such
    zap (kernel: the TLB flush in tdp_mmu_zap_spte_atomic()).  Returns RETRY
    when it met a frozen SPTE or lost a compare-exchange: the caller
    re-walks, as a vCPU re-faults.
    """
    _check_leaf_args(root, gfn, level)
    new_spte = make_leaf_spte(pfn, level, writable)
    page = root
    while page.level > level:
        i = SPTE_INDEX(gfn, page.level)
        old = page.read(i)
        if old == REMOVED_SPTE:
            return InstallStatus.RETRY
        if is_leaf(old, page.level):
            # A huge leaf covers a smaller mapping: zap it, then link a table.
            if zap_spte(page, i, old, shared, on_free_page) is None:
                return InstallStatus.RETRY
            if on_zap is not None:
                on_zap()
            old = page.read(i)
            if old:
                return InstallStatus.RETRY
        if not old & PRESENT:
            child = alloc.alloc_page(page.level - 1, gfn_round_for_level(gfn, page.level))
            if not shared:
                page.set_child(i, child)
            elif not page.link_child(i, old, child):
                alloc.discard(child)
                return InstallStatus.RETRY
            alloc.account_pages(child.level, 1)
            page = child
            continue
        child = page.child_at(i, old)
        if child is None:
            return InstallStatus.RETRY
        page = child
    i = SPTE_INDEX(gfn, level)
    old = page.read(i)
    if old == new_spte:
        return InstallStatus.OK
    if old & PRESENT and not is_leaf(old, level):
        # A huge leaf replaces a page table: tear the table down first.
        if zap_spte(page, i, old, shared, on_free_page) is None:
            return InstallStatus.RETRY
        if on_zap is not None:
            on_zap()
        # A racing fault may have linked a new table meanwhile; replacing it
        # with one compare-exchange would strand it, so start over instead.
        old = page.read(i)
        if old:
            return InstallStatus.RETRY
    if old == REMOVED_SPTE:
        return InstallStatus.RETRY
    if not shared:
        page.write(i, new_spte)
    elif not page.cmpxchg(i, old, new_spte):
        return InstallStatus.RETRY
    if not old & PRESENT:
        alloc.account_leaves(level, 1)
    return InstallStatus.OK
