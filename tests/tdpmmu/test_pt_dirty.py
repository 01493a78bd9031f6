"""Dirty-logging page-table work: write-protecting ranges and splitting huge pages."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tdpmmu.pagetable import (
    PageAllocator,
    SPPage,
    count_present,
    install_leaf,
    iter_leaf_mappings,
    populate_4k,
    walk_to,
    zap_root,
)
from tdpmmu.pt_dirty import split_huge_pages, write_protect_range
from tdpmmu.spte import (
    ACCESSED,
    DIRTY,
    KVM_PAGES_PER_HPAGE,
    PG_LEVEL_1G,
    PG_LEVEL_2M,
    PG_LEVEL_4K,
    WRITABLE,
    make_leaf_spte,
)

G1 = KVM_PAGES_PER_HPAGE(PG_LEVEL_1G)


def accounting_matches_tree(alloc, root):
    pages, stack = [0] * 6, [root]
    while stack:
        page = stack.pop()
        for child in page.children or ():
            if child is not None:
                pages[child.level] += 1
                stack.append(child)
    leaves = [0] * 6
    for _g, level, _s in iter_leaf_mappings(root):
        leaves[level] += 1
    return alloc.pt_pages == pages and alloc.leaf_sptes == leaves


def mixed_root():
    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    populate_4k(root, 0, 2000, 1 << 20, True, alloc)
    install_leaf(root, 8 * 512, PG_LEVEL_2M, 8 * 512, True, False, alloc)
    install_leaf(root, 9 * 512, PG_LEVEL_2M, 9 * 512, False, False, alloc)
    install_leaf(root, G1, PG_LEVEL_1G, G1, True, False, alloc)
    return alloc, root


# -------------------------------------------------------- write_protect_range

@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2 * G1), st.integers(0, G1 + 5000), st.booleans())
def test_write_protect_range_clears_writable_exactly_on_leaves_meeting_the_range(
        start, length, shared):
    alloc, root = mixed_root()
    end = start + length
    before = list(iter_leaf_mappings(root))
    changed = write_protect_range(root, start, end, shared)
    after = list(iter_leaf_mappings(root))
    def meets(gfn, level):
        return start < end and gfn < end and start < gfn + KVM_PAGES_PER_HPAGE(level)

    assert after == [(g, lvl, s & ~WRITABLE if meets(g, lvl) else s) for g, lvl, s in before]
    assert changed == sum(1 for g, lvl, s in before if meets(g, lvl) and s & WRITABLE)
    assert write_protect_range(root, start, end, shared) == 0, "second pass found work"


def test_empty_ranges_neither_write_protect_nor_split_anything():
    alloc, root = mixed_root()
    before = list(iter_leaf_mappings(root))
    assert write_protect_range(root, 8 * 512 + 1, 8 * 512 + 1) == 0
    assert split_huge_pages(root, G1 + 3, G1 + 3, alloc) == 0
    assert list(iter_leaf_mappings(root)) == before


def test_write_protect_range_protects_a_huge_leaf_that_sticks_out_whole():
    alloc, root = mixed_root()
    assert write_protect_range(root, G1 + 5, G1 + 6) == 1
    (_g, level, spte), = iter_leaf_mappings(root, G1, G1 + 1)
    assert level == PG_LEVEL_1G and not spte & WRITABLE


# ----------------------------------------------------------- split_huge_pages

@pytest.mark.parametrize("shared", [False, True])
def test_split_2m_leaf_becomes_512_4k_leaves_with_the_same_pfns_and_bits(shared):
    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    install_leaf(root, 512, PG_LEVEL_2M, 4096, True, False, alloc)
    page, i = walk_to(root, 512)[-1]
    page.write(i, page.read(i) | DIRTY)
    assert split_huge_pages(root, 0, 1 << 36, alloc, shared=shared) == 1
    mappings = list(iter_leaf_mappings(root))
    assert [(g, lvl) for g, lvl, _ in mappings] == [(512 + k, 1) for k in range(512)]
    for g, _lvl, spte in mappings:
        assert spte == make_leaf_spte(4096 + g - 512, PG_LEVEL_4K, True, dirty=True)
        assert spte & ACCESSED
    assert accounting_matches_tree(alloc, root)


def test_split_1g_leaf_ends_as_512_pages_of_4k_leaves():
    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    install_leaf(root, 3 * G1, PG_LEVEL_1G, 5 * G1, False, False, alloc)
    assert split_huge_pages(root, 3 * G1, 4 * G1, alloc) == 1 + 512
    assert count_present(root) == G1 == alloc.leaf_sptes[PG_LEVEL_4K]
    assert alloc.pt_pages[1:3] == [512, 1]
    for gfn in (3 * G1, 3 * G1 + 777, 4 * G1 - 1):
        page, i = walk_to(root, gfn)[-1]
        assert page.level == PG_LEVEL_4K
        assert page.read(i) == make_leaf_spte(5 * G1 + gfn - 3 * G1, PG_LEVEL_4K, False)
    assert zap_root(root, True).sptes == G1
    assert alloc.live_pages == 0 and alloc.live_leaves == 0


def test_split_of_part_of_a_1g_leaf_splits_only_the_2m_pieces_meeting_the_range():
    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    install_leaf(root, 0, PG_LEVEL_1G, 0, True, False, alloc)
    assert split_huge_pages(root, 7, 8, alloc) == 2
    assert alloc.leaf_sptes[1:4] == [512, 511, 0]
    assert accounting_matches_tree(alloc, root)


def test_split_to_2m_target_stops_at_2m_leaves():
    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    install_leaf(root, 0, PG_LEVEL_1G, 0, True, False, alloc)
    assert split_huge_pages(root, 0, G1, alloc, target_level=PG_LEVEL_2M) == 1
    levels = {lvl for _g, lvl, _s in iter_leaf_mappings(root)}
    assert levels == {PG_LEVEL_2M} and alloc.leaf_sptes[PG_LEVEL_2M] == 512


def test_split_only_touches_huge_leaves_meeting_the_range():
    alloc, root = mixed_root()
    split_huge_pages(root, 9 * 512 + 3, 9 * 512 + 4, alloc)
    by_level = {}
    for g, lvl, s in iter_leaf_mappings(root):
        by_level.setdefault(lvl, []).append((g, s))
    assert [g for g, _ in by_level[PG_LEVEL_2M]] == [8 * 512]
    assert [g for g, _ in by_level[PG_LEVEL_1G]] == [G1]
    split_4k = [s for g, s in by_level[PG_LEVEL_4K] if 9 * 512 <= g < 10 * 512]
    assert len(split_4k) == 512 and not any(s & WRITABLE for s in split_4k)
    assert accounting_matches_tree(alloc, root)


class RacingPage(SPPage):
    """A page whose next read() of entry 0, once armed, lets a racing zap clear it."""

    armed = False

    def read(self, i):
        value = super().read(i)
        if self.armed and i == 0:
            self.armed = False
            # A zap removes the 1G leaf between the walk's read and its link.
            assert self.cmpxchg(0, value, 0)
            self.alloc.account_leaves(PG_LEVEL_1G, -1)
        return value


def test_shared_split_that_loses_its_link_race_discards_the_new_page():
    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    l3 = RacingPage(3, 0, 10_000, alloc)
    root.set_child(0, l3)
    alloc.account_pages(3, 1)
    l3.write(0, make_leaf_spte(0, PG_LEVEL_1G, True))
    alloc.account_leaves(PG_LEVEL_1G, 1)
    l3.armed = True
    assert split_huge_pages(root, 0, G1, alloc, shared=True) == 0
    assert alloc.discarded == 1
    assert count_present(root) == 0
    assert accounting_matches_tree(alloc, root)


def test_split_then_zap_returns_accounting_to_zero():
    alloc, root = mixed_root()
    split_huge_pages(root, 0, 2 * G1, alloc, shared=True)
    assert {lvl for _g, lvl, _s in iter_leaf_mappings(root)} == {PG_LEVEL_4K}
    freed = []
    zap_root(root, True, freed.append)
    assert alloc.live_pages == 0 and alloc.live_leaves == 0
    assert len(freed) == alloc.allocated - alloc.discarded
