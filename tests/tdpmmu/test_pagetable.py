"""Page-table pages, the allocator's accounting, faults and bulk population."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tdpmmu.pagetable import (
    InstallStatus,
    PageAllocator,
    SPPage,
    count_present,
    install_leaf,
    iter_leaf_mappings,
    populate_4k,
    walk_to,
    zap_root,
)
from tdpmmu.spte import (
    PG_LEVEL_1G,
    PG_LEVEL_2M,
    PG_LEVEL_4K,
    REMOVED_SPTE,
    SPTE_INDEX,
    is_leaf,
    make_leaf_spte,
    make_nonleaf_spte,
    spte_pfn,
)

OK, RETRY = InstallStatus.OK, InstallStatus.RETRY


def reachable_pages(root):
    """Every page table linked under ``root`` (root excluded)."""
    out, stack = [], [root]
    while stack:
        page = stack.pop()
        if page.children is None:
            continue
        for i, child in enumerate(page.children):
            if child is not None:
                assert spte_pfn(page.read(i)) == child.pfn, "children slot disagrees with SPTE"
                assert child.parent is page and child.parent_index == i
                out.append(child)
                stack.append(child)
    return out


def assert_accounting_matches_tree(alloc, root):
    pages = reachable_pages(root)
    by_level = [0] * 6
    for p in pages:
        by_level[p.level] += 1
    assert alloc.pt_pages == by_level
    leaves = [0] * 6
    for _gfn, level, _spte in iter_leaf_mappings(root):
        leaves[level] += 1
    assert alloc.leaf_sptes == leaves


# ------------------------------------------------------------------ SPPage ops

def test_cmpxchg_stores_only_when_the_entry_still_holds_the_old_value():
    page = PageAllocator().alloc_page(PG_LEVEL_4K, 0)
    leaf = make_leaf_spte(7, PG_LEVEL_4K, True)
    assert page.cmpxchg(3, 0, leaf)
    assert page.read(3) == leaf
    assert not page.cmpxchg(3, 0, 0)
    assert page.read(3) == leaf


def test_xchg_returns_the_previous_value():
    page = PageAllocator().alloc_page(PG_LEVEL_4K, 0)
    page.write(1, 5)
    assert page.xchg(1, 9) == 5
    assert page.read(1) == 9


def test_link_child_publishes_the_child_with_its_back_pointer():
    alloc = PageAllocator()
    parent, child = alloc.alloc_page(2, 0), alloc.alloc_page(1, 512 * 4)
    assert parent.link_child(4, 0, child)
    assert parent.read(4) == make_nonleaf_spte(child.pfn)
    assert parent.child_at(4, parent.read(4)) is child
    assert (child.parent, child.parent_index) == (parent, 4)
    other = alloc.alloc_page(1, 512 * 4)
    assert not parent.link_child(4, 0, other), "linked over a present entry"
    assert parent.children[4] is child


def test_child_at_refuses_a_stale_spte_whose_page_was_replaced():
    alloc = PageAllocator()
    parent, old_child, new_child = (alloc.alloc_page(2, 0), alloc.alloc_page(1, 0),
                                    alloc.alloc_page(1, 0))
    parent.set_child(0, old_child)
    stale = parent.read(0)
    parent.detach_child(0)
    parent.set_child(0, new_child)
    assert parent.child_at(0, stale) is None


def test_freeze_all_returns_old_values_and_leaves_every_entry_removed():
    page = PageAllocator().alloc_page(PG_LEVEL_4K, 0)
    page.write(10, make_leaf_spte(1, 1, False))
    old = page.freeze_all()
    assert old.item(10) == make_leaf_spte(1, 1, False)
    assert (page.spt == np.uint64(REMOVED_SPTE)).all()
    assert not page.cmpxchg(10, 0, 1), "a frozen entry accepted a compare-exchange"


def test_leaf_pages_carry_no_children_list():
    alloc = PageAllocator()
    assert alloc.alloc_page(PG_LEVEL_4K, 0).children is None
    assert len(alloc.alloc_page(PG_LEVEL_2M, 0).children) == 512
    assert not hasattr(alloc.alloc_page(PG_LEVEL_4K, 0), "__dict__")


def test_alloc_root_rejects_levels_other_than_4_and_5():
    with pytest.raises(ValueError, match="root level must be 4 or 5"):
        PageAllocator().alloc_root(3)


# ---------------------------------------------------------------- install_leaf

@pytest.mark.parametrize("root_level", [4, 5])
def test_install_leaf_builds_one_table_per_level_down_to_4k(root_level):
    alloc = PageAllocator()
    root = alloc.alloc_root(root_level)
    gfn = 0x1_2345_6789 if root_level == 5 else 0x12_3456
    assert install_leaf(root, gfn, PG_LEVEL_4K, 0xABC, True, True, alloc) is OK
    path = walk_to(root, gfn)
    assert [p.level for p, _ in path] == list(range(root_level, 0, -1))
    for page, index in path:
        assert index == SPTE_INDEX(gfn, page.level)
        assert page.gfn <= gfn < page.gfn + 512 ** page.level
    leaf_page, i = path[-1]
    assert leaf_page.read(i) == make_leaf_spte(0xABC, PG_LEVEL_4K, True)
    assert alloc.pt_pages[1:root_level] == [1] * (root_level - 1)
    assert alloc.leaf_sptes[PG_LEVEL_4K] == 1
    assert list(iter_leaf_mappings(root)) == [(gfn, 1, leaf_page.read(i))]


@pytest.mark.parametrize("level", [PG_LEVEL_2M, PG_LEVEL_1G])
def test_install_leaf_maps_a_huge_page_without_tables_below_it(level):
    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    gfn = 3 * 512 ** (level - 1) + 17
    assert install_leaf(root, gfn, level, 512 ** (level - 1) * 5, False, False, alloc) is OK
    page, i = walk_to(root, gfn)[-1]
    assert page.level == level and is_leaf(page.read(i), level)
    assert alloc.pt_pages[:level] == [0] * level
    assert alloc.leaf_sptes[level] == 1
    assert [(g, lvl) for g, lvl, _ in iter_leaf_mappings(root)] == [(gfn - 17, level)]


def test_install_leaf_is_idempotent_for_the_same_mapping():
    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    for _ in range(2):
        assert install_leaf(root, 5, 1, 9, True, True, alloc) is OK
    assert alloc.leaf_sptes[1] == 1 and count_present(root) == 1


def test_install_4k_under_a_2m_leaf_zaps_the_huge_leaf_then_links_a_table():
    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    install_leaf(root, 0, PG_LEVEL_2M, 512, True, True, alloc)
    zaps = []
    assert install_leaf(root, 7, PG_LEVEL_4K, 99, True, True, alloc,
                        on_zap=lambda: zaps.append(1)) is OK
    assert zaps == [1]            # the caller owes a TLB flush for the old 2M mapping
    assert [(g, lvl) for g, lvl, _ in iter_leaf_mappings(root)] == [(7, 1)]
    assert_accounting_matches_tree(alloc, root)


def test_install_2m_over_a_4k_table_tears_the_table_down_through_on_free_page():
    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    populate_4k(root, 512, 512, 4096, True, alloc)
    freed, zaps = [], []
    assert install_leaf(root, 600, PG_LEVEL_2M, 1024, True, True, alloc, freed.append,
                        on_zap=lambda: zaps.append(1)) is OK
    assert [p.level for p in freed] == [1] and zaps == [1]
    assert (freed[0].spt == np.uint64(REMOVED_SPTE)).all()
    assert [(g, lvl) for g, lvl, _ in iter_leaf_mappings(root)] == [(512, 2)]
    assert_accounting_matches_tree(alloc, root)


@pytest.mark.parametrize("frozen_level", [3, 2, 1])
def test_install_leaf_returns_retry_on_a_frozen_entry(frozen_level):
    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    gfn = 0x4_0201
    install_leaf(root, gfn, 1, 1, True, True, alloc)
    page, i = next((p, i) for p, i in walk_to(root, gfn) if p.level == frozen_level)
    saved = page.xchg(i, REMOVED_SPTE)
    assert install_leaf(root, gfn, 1, 2, True, True, alloc) is RETRY
    assert page.read(i) == REMOVED_SPTE, "a frozen SPTE was overwritten by a fault"
    page.xchg(i, saved)
    assert install_leaf(root, gfn, 1, 2, True, True, alloc) is OK


class RacingPage(SPPage):
    """A page whose first read() of one entry lets a "racing thread" change it."""

    def arm(self, index, racer):
        self.race = (index, racer)

    def read(self, i):
        value = super().read(i)
        race = getattr(self, "race", None)
        if race and race[0] == i:
            self.race = None
            race[1](self)
        return value


def test_install_leaf_returns_retry_and_discards_its_table_when_a_link_race_is_lost():
    alloc = PageAllocator()
    root = RacingPage(4, 0, 1000, alloc)
    winner = alloc.alloc_page(3, 0)
    root.arm(0, lambda page: page.link_child(0, 0, winner))
    assert install_leaf(root, 5, 1, 9, True, True, alloc) is RETRY
    assert alloc.discarded == 1
    assert root.children[0] is winner
    assert install_leaf(root, 5, 1, 9, True, True, alloc) is OK


def test_install_leaf_returns_retry_when_the_target_spte_changed_under_it():
    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    install_leaf(root, 0, 2, 0, True, True, alloc)
    l2 = walk_to(root, 0, 2)[-1][0]
    leaf_pt = RacingPage(1, 0, 1001, alloc)
    l2.xchg(0, 0)
    alloc.account_leaves(2, -1)
    l2.set_child(0, leaf_pt)
    other = make_leaf_spte(77, 1, False)
    leaf_pt.arm(3, lambda page: page.cmpxchg(3, 0, other))
    assert install_leaf(root, 3, 1, 9, True, True, alloc) is RETRY
    assert leaf_pt.read(3) == other


def test_install_leaf_write_locked_path_uses_plain_stores_and_never_retries():
    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    for gfn in range(0, 4096, 37):
        assert install_leaf(root, gfn, 1, gfn, False, False, alloc) is OK
    assert count_present(root) == len(range(0, 4096, 37))
    assert_accounting_matches_tree(alloc, root)


def test_install_leaf_rejects_levels_and_gfns_the_root_cannot_hold():
    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    with pytest.raises(ValueError, match="cannot hold a leaf"):
        install_leaf(root, 0, 4, 0, True, True, alloc)
    with pytest.raises(ValueError, match="outside the root"):
        install_leaf(root, 1 << 36, 1, 0, True, True, alloc)


def test_walk_to_stops_at_the_hole_that_ends_the_walk():
    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    install_leaf(root, 0, 1, 0, True, True, alloc)
    path = walk_to(root, 512 * 512 * 7)
    assert [p.level for p, _ in path] == [4, 3]


# ----------------------------------------------------------------- populate_4k

@settings(max_examples=40, deadline=None)
@given(st.integers(0, 3000), st.integers(0, 3000), st.integers(0, 1 << 20))
def test_populate_4k_maps_each_gfn_to_its_pfn_and_accounts_it(start, npages, base_pfn):
    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    assert populate_4k(root, start, npages, base_pfn, True, alloc) == npages
    mappings = list(iter_leaf_mappings(root))
    assert [g for g, _, _ in mappings] == list(range(start, start + npages))
    assert all(spte_pfn(s) == base_pfn + g - start and lvl == 1 for g, lvl, s in mappings)
    assert_accounting_matches_tree(alloc, root)


def test_populate_4k_over_existing_leaves_rewrites_them_without_double_counting():
    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    populate_4k(root, 100, 200, 0, True, alloc)
    populate_4k(root, 0, 1024, 5000, False, alloc)
    assert count_present(root) == 1024 == alloc.leaf_sptes[1]
    assert_accounting_matches_tree(alloc, root)


def test_populate_4k_refuses_to_overwrite_a_huge_leaf():
    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    install_leaf(root, 0, PG_LEVEL_2M, 0, True, False, alloc)
    with pytest.raises(ValueError, match="split it first"):
        populate_4k(root, 0, 10, 0, True, alloc)


def test_populate_4k_rejects_negative_and_out_of_range_sizes():
    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    with pytest.raises(ValueError, match="negative"):
        populate_4k(root, 0, -1, 0, True, alloc)
    with pytest.raises(ValueError, match="outside the root"):
        populate_4k(root, (1 << 36) - 1, 2, 0, True, alloc)


@pytest.mark.parametrize("shared", [False, True])
def test_populate_then_zap_returns_accounting_to_zero(shared):
    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    npages = 3 * 512 * 512 + 777
    populate_4k(root, 12345, npages, 1 << 30, True, alloc)
    assert count_present(root) == npages == alloc.live_leaves
    freed = []
    result = zap_root(root, shared, freed.append)
    assert result.sptes == npages
    assert result.pages == len(freed) == alloc.allocated
    assert alloc.live_pages == 0 and alloc.live_leaves == 0
    assert count_present(root) == 0 and not root.spt.any()
    assert all(c is None for c in root.children)


def test_count_present_and_iter_leaf_mappings_respect_the_range():
    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    install_leaf(root, 1024, PG_LEVEL_2M, 0, True, False, alloc)
    populate_4k(root, 0, 600, 0, True, alloc)
    assert count_present(root, 590, 1030) == 11
    assert [(g, lvl) for g, lvl, _ in iter_leaf_mappings(root, 599, 1100)] == [(599, 1),
                                                                             (1024, 2)]
    assert count_present(root, 600, 1024) == 0
    assert count_present(root, 1030, 1030) == 0
    assert not list(iter_leaf_mappings(root, 1030, 1030))
