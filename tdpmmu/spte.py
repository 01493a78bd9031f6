"""SPTE encoding: what one 64-bit entry of a TDP page table means.

An SPTE is a plain Python ``int`` (or one ``uint64`` lane of a page's numpy
array).  The layout is this model's own, shaped like an EPT entry:

====  =============  ==========================================================
bit   name           meaning
====  =============  ==========================================================
0     PRESENT        the entry maps something (a leaf or a child page table)
1     WRITABLE       writes through this entry are allowed
7     LEAF           "page size": a 2M/1G leaf; never set at 4K, where every
                     present entry is a leaf anyway
8     ACCESSED       set when the mapping was installed by a real access
9     DIRTY          set when the mapping was installed by a write
12-51 pfn            host page frame (leaf) or child page-table id (non-leaf)
59    REMOVED        the frozen marker (see ``REMOVED_SPTE``)
====  =============  ==========================================================

A non-present SPTE is exactly ``0`` or ``REMOVED_SPTE``.  Both have a zero low
byte, which the bulk counters rely on to count present entries by looking at
one byte per lane.

Levels follow the kernel: 1 = 4K, 2 = 2M, 3 = 1G, 4 = 512G (the top of a
4-level root), 5 = the top of a 5-level (la57) root.  Gfns are 4K frame numbers.

Kernel: arch/x86/kvm/mmu/spte.h and spte.c (make_spte(), make_nonleaf_spte(),
is_shadow_present_pte(), is_last_spte(), REMOVED_SPTE) and mmu.h/kvm_host.h
(KVM_PAGES_PER_HPAGE, SPTE_INDEX, gfn_round_for_level).
"""

import sys

import numpy as np

PG_LEVEL_4K = 1
PG_LEVEL_2M = 2
PG_LEVEL_1G = 3
PG_LEVEL_512G = 4
PG_LEVEL_LA57 = 5
MAX_HUGE_LEVEL = PG_LEVEL_1G

SPTE_ENT_PER_PAGE = 512
SPTE_LEVEL_BITS = 9

PRESENT = 1 << 0
WRITABLE = 1 << 1
LEAF = 1 << 7
ACCESSED = 1 << 8
DIRTY = 1 << 9
PFN_SHIFT = 12
PFN_BITS = 40
PFN_MASK = ((1 << PFN_BITS) - 1) << PFN_SHIFT

# Kernel: REMOVED_SPTE.  Non-present (bit 0 clear), never produced by
# make_*_spte(), so a compare-exchange from any value a walker read as
# "usable" fails against it; only the thread that froze the entry overwrites it.
REMOVED_SPTE = 1 << 59

# Kernel: tdp_mmu_max_gfn_exclusive() with 52 physical address bits.
MAX_GFN_EXCLUSIVE = 1 << PFN_BITS

_NONLEAF_FLAGS = PRESENT | WRITABLE | ACCESSED
_PAGES = tuple(1 << (SPTE_LEVEL_BITS * (lvl - 1)) if lvl else 0 for lvl in range(7))
_SHIFTS = tuple(SPTE_LEVEL_BITS * (lvl - 1) if lvl else 0 for lvl in range(7))


def KVM_PAGES_PER_HPAGE(level):
    """Number of 4K gfns one entry at ``level`` covers.

    Kernel: KVM_PAGES_PER_HPAGE() in arch/x86/include/asm/kvm_host.h.
    """
    return _PAGES[level]


def SPTE_INDEX(gfn, level):
    """Index (0..511) of the entry covering ``gfn`` in a page at ``level``.

    Kernel: SPTE_INDEX() in arch/x86/kvm/mmu/spte.h (which takes an address).
    """
    return (gfn >> _SHIFTS[level]) & (SPTE_ENT_PER_PAGE - 1)


def gfn_round_for_level(gfn, level):
    """First gfn of the ``level`` entry that covers ``gfn``.

    Kernel: gfn_round_for_level() in arch/x86/kvm/mmu/mmu_internal.h.
    """
    return gfn & ~(_PAGES[level] - 1)


def root_gfn_end(root_level):
    """Exclusive gfn bound a root of ``root_level`` can map.

    Kernel: tdp_mmu_max_gfn_exclusive(), capped by what the root spans.
    """
    return min(_PAGES[root_level] << SPTE_LEVEL_BITS, MAX_GFN_EXCLUSIVE)


def make_leaf_spte(pfn, level, writable, *, accessed=True, dirty=False):
    """A leaf SPTE mapping ``pfn`` at ``level`` (huge when level > 1).

    Kernel: make_spte() in arch/x86/kvm/mmu/spte.c.

    Raises ValueError for a level that cannot hold a leaf, a pfn outside the
    40-bit field, or a huge pfn not aligned to its page size (the hardware
    ignores low pfn bits there, so an unaligned value would silently lie).
    """
    if not PG_LEVEL_4K <= level <= MAX_HUGE_LEVEL:
        raise ValueError(f"make_leaf_spte: level {level} cannot hold a leaf (1..3)")
    if not 0 <= pfn < (1 << PFN_BITS):
        raise ValueError(f"make_leaf_spte: pfn {pfn:#x} does not fit in {PFN_BITS} bits")
    if pfn & (_PAGES[level] - 1):
        raise ValueError(f"make_leaf_spte: pfn {pfn:#x} not aligned for level {level}")
    spte = PRESENT | (pfn << PFN_SHIFT)
    if level > PG_LEVEL_4K:
        spte |= LEAF
    if writable:
        spte |= WRITABLE
    if accessed:
        spte |= ACCESSED
    if dirty:
        spte |= DIRTY
    return spte


def make_nonleaf_spte(child_pfn):
    """A non-leaf SPTE pointing at the page table whose id is ``child_pfn``.

    Kernel: make_nonleaf_spte() in arch/x86/kvm/mmu/spte.c.
    """
    return _NONLEAF_FLAGS | (child_pfn << PFN_SHIFT)


def is_present(spte):
    """Kernel: is_shadow_present_pte().  ``REMOVED_SPTE`` is not present."""
    return bool(spte & PRESENT)


def is_leaf(spte, level):
    """True for a present entry that maps memory rather than a page table.

    Kernel: is_last_spte() combined with is_shadow_present_pte().
    """
    if not spte & PRESENT:
        return False
    return level == PG_LEVEL_4K or bool(spte & LEAF)


def is_removed(spte):
    """Kernel: is_removed_spte()."""
    return spte == REMOVED_SPTE


def spte_pfn(spte):
    """Kernel: spte_to_pfn()."""
    return (spte & PFN_MASK) >> PFN_SHIFT


# ---------------------------------------------------------------- numpy forms
# The hot paths work on whole 512-entry pages; a per-lane Python loop would
# cost ~100x more than these vectorised forms.

_LOW_BYTE = 0 if sys.byteorder == "little" else 7
PFN_STEPS = np.arange(SPTE_ENT_PER_PAGE, dtype=np.uint64) << np.uint64(PFN_SHIFT)
REMOVED_SPTE_U64 = np.uint64(REMOVED_SPTE)


def low_bytes(sptes):
    """Strided view of each lane's low byte (flags PRESENT..LEAF), no copy."""
    return sptes.view(np.uint8)[_LOW_BYTE::8]


def count_present_sptes(sptes):
    """Number of present lanes in a uint64 array.

    Cost: one pass over ``len(sptes)`` bytes; relies on non-present values
    having a zero low byte.
    """
    return int(np.count_nonzero(low_bytes(sptes)))


def present_mask(sptes):
    """Boolean mask of present lanes."""
    return (low_bytes(sptes) & PRESENT) != 0


def leaf_mask(sptes, level):
    """Boolean mask of present leaf lanes at ``level``."""
    lb = low_bytes(sptes)
    if level == PG_LEVEL_4K:
        return (lb & PRESENT) != 0
    return (lb & (PRESENT | LEAF)) == (PRESENT | LEAF)


def spte_pfns(sptes):
    """The pfn field of every lane, as uint64."""
    return (sptes & np.uint64(PFN_MASK)) >> np.uint64(PFN_SHIFT)


def make_leaf_sptes(base_pfn, count, level, writable, *, accessed=True, dirty=False,
                    out=None):
    """``count`` consecutive leaf SPTEs mapping ``base_pfn`` onward at ``level``.

    Vectorised make_leaf_spte(): lane ``k`` maps ``base_pfn + k * pages(level)``;
    ``count`` is at most one page (512).  Written into ``out`` when given
    (which must hold ``count`` lanes).
    """
    if not 0 <= count <= SPTE_ENT_PER_PAGE:
        raise ValueError(f"make_leaf_sptes: count {count} outside 0..{SPTE_ENT_PER_PAGE}")
    first = make_leaf_spte(base_pfn, level, writable, accessed=accessed, dirty=dirty)
    last_pfn = base_pfn + (count - 1) * _PAGES[level]
    if count and last_pfn >= (1 << PFN_BITS):
        raise ValueError(f"make_leaf_sptes: pfn {last_pfn:#x} does not fit in {PFN_BITS} bits")
    steps = PFN_STEPS[:count]
    if level > PG_LEVEL_4K:
        steps = steps << np.uint64(_SHIFTS[level])
    if out is None:
        return steps + np.uint64(first)
    return np.add(steps, np.uint64(first), out=out)
