"""SPTE encoding: scalar helpers, level arithmetic and their numpy forms agree."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tdpmmu.spte import (
    ACCESSED,
    DIRTY,
    KVM_PAGES_PER_HPAGE,
    LEAF,
    MAX_GFN_EXCLUSIVE,
    PFN_BITS,
    PG_LEVEL_1G,
    PG_LEVEL_2M,
    PG_LEVEL_4K,
    PG_LEVEL_512G,
    PG_LEVEL_LA57,
    REMOVED_SPTE,
    SPTE_INDEX,
    WRITABLE,
    count_present_sptes,
    gfn_round_for_level,
    is_leaf,
    is_present,
    is_removed,
    leaf_mask,
    low_bytes,
    make_leaf_spte,
    make_leaf_sptes,
    make_nonleaf_spte,
    present_mask,
    root_gfn_end,
    spte_pfn,
)

levels = st.integers(PG_LEVEL_4K, PG_LEVEL_1G)
pfns = st.integers(0, (1 << PFN_BITS) - 1)


@st.composite
def leaf_args(draw):
    level = draw(levels)
    pfn = gfn_round_for_level(draw(pfns), level)
    return pfn, level, draw(st.booleans())


@given(leaf_args(), st.booleans(), st.booleans())
def test_leaf_spte_round_trips_pfn_level_and_permissions(args, accessed, dirty):
    pfn, level, writable = args
    spte = make_leaf_spte(pfn, level, writable, accessed=accessed, dirty=dirty)
    assert is_present(spte)
    assert is_leaf(spte, level)
    assert spte_pfn(spte) == pfn
    assert bool(spte & WRITABLE) == writable
    assert bool(spte & ACCESSED) == accessed
    assert bool(spte & DIRTY) == dirty
    assert bool(spte & LEAF) == (level > PG_LEVEL_4K)
    assert not is_removed(spte)


@given(pfns, st.integers(PG_LEVEL_2M, PG_LEVEL_LA57))
def test_nonleaf_spte_is_present_but_never_a_leaf_above_4k(pfn, level):
    spte = make_nonleaf_spte(pfn)
    assert is_present(spte)
    assert not is_leaf(spte, level)
    assert spte_pfn(spte) == pfn
    assert spte != REMOVED_SPTE


def test_removed_spte_is_not_present_and_not_a_leaf_at_any_level():
    assert is_removed(REMOVED_SPTE)
    assert not is_present(REMOVED_SPTE)
    for level in range(PG_LEVEL_4K, PG_LEVEL_LA57 + 1):
        assert not is_leaf(REMOVED_SPTE, level)
    assert not is_removed(0)


def test_non_present_values_have_a_zero_low_byte_as_bulk_counters_assume():
    lanes = np.array([0, REMOVED_SPTE], dtype=np.uint64)
    assert not low_bytes(lanes).any()


@pytest.mark.parametrize("pfn, level, why", [
    (1, PG_LEVEL_2M, "not aligned"),
    (512, PG_LEVEL_1G, "not aligned"),
    (0, PG_LEVEL_512G, "cannot hold a leaf"),
    (0, 0, "cannot hold a leaf"),
    (1 << PFN_BITS, PG_LEVEL_4K, "does not fit"),
    (-1, PG_LEVEL_4K, "does not fit"),
])
def test_make_leaf_spte_rejects_bad_arguments_with_a_clear_message(pfn, level, why):
    with pytest.raises(ValueError, match=why):
        make_leaf_spte(pfn, level, True)


def test_pages_per_hpage_matches_the_x86_page_sizes():
    assert KVM_PAGES_PER_HPAGE(PG_LEVEL_4K) == 1
    assert KVM_PAGES_PER_HPAGE(PG_LEVEL_2M) == 512
    assert KVM_PAGES_PER_HPAGE(PG_LEVEL_1G) == 512 * 512
    assert KVM_PAGES_PER_HPAGE(PG_LEVEL_512G) == 1 << 27


def test_root_gfn_end_covers_48_bit_and_caps_la57_at_the_pfn_width():
    assert root_gfn_end(4) == 1 << 36
    assert root_gfn_end(5) == MAX_GFN_EXCLUSIVE == 1 << 40


@given(st.integers(0, (1 << 40) - 1))
def test_spte_indexes_per_level_reconstruct_the_gfn(gfn):
    rebuilt = sum(SPTE_INDEX(gfn, lvl) * KVM_PAGES_PER_HPAGE(lvl) for lvl in range(1, 6))
    assert rebuilt == gfn


@given(st.integers(0, (1 << 40) - 1), st.integers(PG_LEVEL_4K, PG_LEVEL_LA57))
def test_gfn_round_for_level_is_the_first_gfn_of_the_covering_entry(gfn, level):
    base = gfn_round_for_level(gfn, level)
    assert base <= gfn < base + KVM_PAGES_PER_HPAGE(level)
    assert base % KVM_PAGES_PER_HPAGE(level) == 0


@given(leaf_args(), st.integers(0, 512), st.booleans())
def test_make_leaf_sptes_matches_the_scalar_form_lane_by_lane(args, count, dirty):
    pfn, level, writable = args
    last = pfn + max(count - 1, 0) * KVM_PAGES_PER_HPAGE(level)
    if last >= 1 << PFN_BITS:
        with pytest.raises(ValueError):
            make_leaf_sptes(pfn, count, level, writable, dirty=dirty)
        return
    lanes = make_leaf_sptes(pfn, count, level, writable, dirty=dirty)
    assert lanes.dtype == np.uint64 and len(lanes) == count
    for k in (0, count // 2, count - 1) if count else ():
        step = k * KVM_PAGES_PER_HPAGE(level)
        assert lanes.item(k) == make_leaf_spte(pfn + step, level, writable, dirty=dirty)


def test_make_leaf_sptes_writes_into_out_without_allocating():
    out = np.zeros(512, dtype=np.uint64)
    got = make_leaf_sptes(1024, 512, PG_LEVEL_4K, False, out=out)
    assert got is out
    assert out.item(511) == make_leaf_spte(1024 + 511, PG_LEVEL_4K, False)


spte_values = st.one_of(
    st.just(0), st.just(REMOVED_SPTE),
    st.builds(make_nonleaf_spte, st.integers(1, 1 << 20)),
    leaf_args().map(lambda a: make_leaf_spte(*a)),
)


@given(st.lists(spte_values, max_size=64), levels)
def test_vectorised_masks_agree_with_the_scalar_predicates(values, level):
    lanes = np.array(values, dtype=np.uint64)
    assert present_mask(lanes).tolist() == [is_present(v) for v in values]
    assert count_present_sptes(lanes) == sum(map(is_present, values))
    # Every present level-1 lane is a leaf; above, only those with the LEAF bit.
    expected = [is_present(v) and (level == PG_LEVEL_4K or bool(v & LEAF)) for v in values]
    assert leaf_mask(lanes, level).tolist() == expected
