"""The TDP iterator: pre-order gfn walk, restart after a yield, yield only after progress."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tdpmmu.iter import TdpIter, for_each_tdp_pte_min_level
from tdpmmu.pagetable import PageAllocator, install_leaf, populate_4k
from tdpmmu.spte import KVM_PAGES_PER_HPAGE, PG_LEVEL_1G, PG_LEVEL_2M, PG_LEVEL_4K, is_present


def small_tree():
    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    populate_4k(root, 510, 4, 0, True, alloc)          # 4K leaves across two leaf pages
    install_leaf(root, 5 * 512, PG_LEVEL_2M, 512, True, False, alloc)
    install_leaf(root, 2 * 512 * 512, PG_LEVEL_1G, 0, True, False, alloc)
    return root


def present_positions(it):
    return [(pos.level, pos.gfn) for pos in it if is_present(pos.old_spte)]


def test_iterator_visits_present_entries_in_preorder_gfn_order():
    root = small_tree()
    got = present_positions(TdpIter(root, PG_LEVEL_4K, 0, 1 << 36))
    assert got == [(4, 0), (3, 0), (2, 0), (1, 510), (1, 511), (2, 512), (1, 512), (1, 513),
                   (2, 5 * 512), (3, 2 * 512 * 512)]


def test_iterator_stops_at_min_level_and_at_end():
    root = small_tree()
    got = present_positions(for_each_tdp_pte_min_level(root, PG_LEVEL_2M, 0, 512 * 5))
    assert got == [(4, 0), (3, 0), (2, 0), (2, 512)]


def test_positions_above_the_start_may_begin_before_it():
    root = small_tree()
    got = present_positions(TdpIter(root, PG_LEVEL_4K, 511, 513))
    assert got == [(4, 0), (3, 0), (2, 0), (1, 511), (2, 512), (1, 512)]


def test_iterator_does_not_enter_a_table_zapped_after_its_position_was_reported():
    root = small_tree()
    seen = []
    for pos in TdpIter(root, PG_LEVEL_4K, 0, 1024):
        seen.append(pos.level)
        if pos.level == PG_LEVEL_2M and pos.gfn == 0:
            child = pos.page.detach_child(pos.index)
            pos.page.write(pos.index, 0)
            assert child is not None
    assert 1 not in seen[:seen.index(2) + 1]
    assert seen.count(1) == 512, "only the second leaf page should have been walked"


def test_an_empty_range_visits_nothing():
    root = small_tree()
    assert list(TdpIter(root, PG_LEVEL_4K, 511, 511)) == []
    assert list(TdpIter(root, PG_LEVEL_4K, 600, 10)) == []


def test_iterator_rejects_a_min_level_outside_the_root():
    root = PageAllocator().alloc_root(4)
    with pytest.raises(ValueError, match="min_level"):
        TdpIter(root, 5, 0, 10)


def test_a_yield_restarts_from_the_root_at_the_first_unhandled_gfn():
    root = small_tree()
    it = TdpIter(root, PG_LEVEL_4K, 0, 1024)
    trail = []
    yielded_once = False
    for pos in it:
        trail.append((pos.level, pos.gfn))
        if pos.level == 1 and pos.gfn == 512 and not yielded_once:
            assert pos.cond_resched(lambda _flush: True)
            yielded_once = True
            trail.append("yield")
    i = trail.index("yield")
    assert trail[i - 1] == (1, 512)
    # Back down from the root to the same, still unhandled, gfn.
    assert trail[i + 1:i + 5] == [(4, 0), (3, 0), (2, 512), (1, 512)]


def test_no_yield_is_offered_before_the_walk_has_made_progress():
    root = small_tree()
    asked = []
    it = TdpIter(root, PG_LEVEL_4K, 510, 1024)
    first = next(it)
    assert not first.cond_resched(lambda _flush: asked.append(1) or True)
    assert asked == []


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2000), st.integers(1, 3000), st.sampled_from([1, 2, 3]),
       st.lists(st.booleans(), min_size=1, max_size=50))
def test_always_contended_walk_never_yields_twice_without_progress_and_ends(
        start, length, min_level, pattern):
    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    populate_4k(root, 0, 2048, 0, True, alloc)
    end = start + length
    baseline = [(p.level, p.gfn) for p in TdpIter(root, min_level, start, end)]
    handled, yields = [], []
    it = TdpIter(root, min_level, start, end)
    step = 0
    for pos in it:
        contended = pattern[step % len(pattern)]
        step += 1
        if pos.cond_resched(lambda _flush, c=contended: c):
            yields.append(pos.next_last_level_gfn)
            continue
        handled.append((pos.level, pos.gfn))
        assert step < 100_000, "walk does not terminate"
    assert yields == sorted(set(yields)), "yielded twice at the same point"
    # Each lowest-level position is handled exactly once, as without yields.
    lowest = [p for p in baseline if p[0] == min_level]
    assert [p for p in handled if p[0] == min_level] == lowest


def test_positions_step_by_the_page_size_of_their_level():
    root = small_tree()
    gfns = [pos.gfn for pos in TdpIter(root, PG_LEVEL_1G, 0, 1 << 30)
            if pos.level == PG_LEVEL_1G]
    assert gfns == [k * KVM_PAGES_PER_HPAGE(PG_LEVEL_1G) for k in range(512)]


# ------------------------------------------------------------ skip_absent

def _mixed_tree(leaves):
    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    for gfn, level in leaves:
        gfn &= ~(KVM_PAGES_PER_HPAGE(level) - 1)
        install_leaf(root, gfn, level, gfn, True, False, alloc)
    return root


def _walk(root, min_level, start, end, skip, answers):
    """Present positions and yield points; the yield answer changes only at
    present positions (as it can only change where the walker does something)."""
    trail, yields = [], []
    seen = 0
    it = TdpIter(root, min_level, start, end, skip_absent=skip)
    for pos in it:
        if pos.cond_resched(lambda _flush, n=seen: answers[n % len(answers)]):
            yields.append(pos.next_last_level_gfn)
            continue
        if is_present(pos.old_spte):
            trail.append((pos.level, pos.gfn))
            seen += 1
    return trail, yields


_leaf = st.tuples(st.integers(0, 4 * 512 * 512 * 512 - 1), st.sampled_from([1, 1, 1, 2, 3]))


@settings(max_examples=60, deadline=None)
@given(st.lists(_leaf, max_size=12), st.integers(0, 3 * 512 * 512), st.integers(1, 1 << 30),
       st.sampled_from([1, 2, 3, 4]), st.lists(st.booleans(), min_size=1, max_size=8))
def test_skipping_absent_entries_keeps_present_positions_and_yield_points(
        leaves, start, length, min_level, answers):
    root = _mixed_tree(leaves)
    plain = _walk(root, min_level, start, start + length, False, answers)
    assert _walk(root, min_level, start, start + length, True, answers) == plain


def test_skipping_walk_visits_few_positions_of_a_sparse_tree():
    root = _mixed_tree([(3, 1), (7 * 512, 1), (5 * 512 * 512, 2)])
    it = TdpIter(root, PG_LEVEL_4K, 0, 1 << 36, skip_absent=True)
    visited = 0
    for pos in it:
        pos.cond_resched(lambda _flush: False)
        visited += 1
    # Each present entry, the absent entry after it, and the root's first entry.
    assert visited < 30


def test_without_a_refused_yield_offer_nothing_is_skipped():
    root = _mixed_tree([(3, 1)])
    plain = sum(1 for _ in TdpIter(root, PG_LEVEL_4K, 0, 1 << 20))
    assert sum(1 for _ in TdpIter(root, PG_LEVEL_4K, 0, 1 << 20, skip_absent=True)) == plain
