"""Zapping: two-pass root zap, yielding, range zaps, and zaps racing faults."""

import itertools
import random
import sys
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tdpmmu.pagetable import (
    InstallStatus,
    PageAllocator,
    count_present,
    install_leaf,
    iter_leaf_mappings,
    populate_4k,
    walk_to,
)
from tdpmmu.pt_dirty import split_huge_pages, write_protect_range
from tdpmmu.spte import (
    KVM_PAGES_PER_HPAGE,
    PG_LEVEL_1G,
    PG_LEVEL_2M,
    PG_LEVEL_4K,
    REMOVED_SPTE,
    gfn_round_for_level,
    make_leaf_spte,
    spte_pfn,
)
from tdpmmu.zap import zap_range, zap_root, zap_spte

G1 = KVM_PAGES_PER_HPAGE(PG_LEVEL_1G)
G512 = KVM_PAGES_PER_HPAGE(4)


def reachable_pages(root):
    out, stack = [], [root]
    while stack:
        page = stack.pop()
        for child in page.children or ():
            if child is not None:
                out.append(child)
                stack.append(child)
    return out


def assert_accounting_matches_tree(alloc, root):
    by_level = [0] * 6
    for p in reachable_pages(root):
        by_level[p.level] += 1
    leaves = [0] * 6
    for _g, level, _s in iter_leaf_mappings(root):
        leaves[level] += 1
    assert (alloc.pt_pages, alloc.leaf_sptes) == (by_level, leaves)


def assert_freed_pages_are_dead(freed):
    assert len({id(p) for p in freed}) == len(freed), "a page was freed twice"
    for page in freed:
        assert (page.spt == np.uint64(REMOVED_SPTE)).all(), f"{page} holds a live SPTE"
        assert page.parent is None
        assert page.children is None or not any(page.children), f"{page} still links a child"


def sparse_root(root_level=4):
    """Mappings in several 1G and 512G regions, some 4K, some huge."""
    alloc = PageAllocator()
    root = alloc.alloc_root(root_level)
    for gfn in (0, 5, 3 * 512, 7 * G1 + 9, G512 + 2 * G1, 3 * G512 + 11):
        install_leaf(root, gfn, PG_LEVEL_4K, gfn, True, False, alloc)
    install_leaf(root, 2 * G1 + 4 * 512, PG_LEVEL_2M, 0, True, False, alloc)
    install_leaf(root, 9 * G1, PG_LEVEL_1G, 0, True, False, alloc)
    if root_level == 5:
        install_leaf(root, 600 * G512, PG_LEVEL_4K, 1, True, False, alloc)
    return alloc, root


# ------------------------------------------------------------------- zap_root

@pytest.mark.parametrize("root_level", [4, 5])
def test_zap_root_tears_down_1g_subtrees_before_any_higher_table(root_level):
    alloc, root = sparse_root(root_level)
    nleaves = alloc.live_leaves
    freed = []
    result = zap_root(root, False, freed.append)
    levels = [p.level for p in freed]
    first_high = next(i for i, lvl in enumerate(levels) if lvl >= PG_LEVEL_1G)
    assert all(lvl < PG_LEVEL_1G for lvl in levels[:first_high]), levels
    assert all(lvl >= PG_LEVEL_1G for lvl in levels[first_high:]), levels
    # Children go before their parent within the second pass too.
    if root_level == 5:
        assert levels[first_high:].index(4) > levels[first_high:].index(3)
    assert result == (nleaves, len(freed))
    assert alloc.live_pages == 0 and alloc.live_leaves == 0
    assert not root.spt.any() and not any(root.children)
    assert_freed_pages_are_dead(freed)


def test_zap_root_first_pass_frees_lower_tables_in_gfn_order():
    alloc, root = sparse_root()
    freed = []
    zap_root(root, True, freed.append)
    lower = [p.gfn for p in freed if p.level == PG_LEVEL_2M]
    assert lower == sorted(lower)


@pytest.mark.parametrize("shared", [False, True])
def test_always_contended_zap_root_neither_skips_nor_double_zaps(shared):
    alloc, root = sparse_root()
    populate_4k(root, 4 * G1, 2 * G1 + 1000, 0, True, alloc)
    expected_leaves, expected_pages = alloc.live_leaves, alloc.allocated
    freed, yields = [], []

    def should_yield(_flush=False):
        yields.append(len(freed))
        return True

    result = zap_root(root, shared, freed.append, should_yield)
    assert result == (expected_leaves, expected_pages)
    assert len(yields) > 10
    assert alloc.live_pages == 0 and alloc.live_leaves == 0
    assert_freed_pages_are_dead(freed)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=40), st.booleans())
def test_zap_root_result_does_not_depend_on_when_it_yields(pattern, shared):
    alloc, root = sparse_root()
    populate_4k(root, 20 * G1 - 700, 1400, 0, True, alloc)
    leaves = alloc.live_leaves
    calls = itertools.cycle(pattern)
    freed = []
    result = zap_root(root, shared, freed.append, lambda _flush: next(calls))
    assert result == (leaves, alloc.allocated)
    assert alloc.live_pages == 0 == alloc.live_leaves
    assert_freed_pages_are_dead(freed)


def test_mappings_added_behind_the_walk_while_it_yielded_are_zapped_by_the_second_pass():
    alloc, root = sparse_root()
    populate_4k(root, 0, 4 * 512, 0, True, alloc)
    faults = iter(range(3))

    def should_yield(_flush=False):
        # While mmu_lock is dropped a vCPU faults in a page the walk already passed.
        if next(faults, None) is not None:
            assert install_leaf(root, 1, PG_LEVEL_4K, 1, True, True, alloc) is InstallStatus.OK
        return True

    zap_root(root, True, None, should_yield)
    assert count_present(root) == 0
    assert alloc.live_pages == 0 and alloc.live_leaves == 0


# -------------------------------------------------------------------- zap_spte

def test_zap_spte_reports_a_lost_race_with_none():
    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    install_leaf(root, 0, PG_LEVEL_4K, 0, True, True, alloc)
    page, i = walk_to(root, 0)[-1]
    stale = make_leaf_spte(123, PG_LEVEL_4K, True)
    assert zap_spte(page, i, stale, True) is None
    assert zap_spte(page, i, page.read(i), True) == (1, 0)
    assert page.read(i) == 0


def test_teardown_waits_for_an_entry_another_thread_froze_and_takes_its_final_value():
    waiting = threading.Event()
    alloc = PageAllocator(cpu_relax=lambda: (waiting.set(), time.sleep(0.0005)))
    root = alloc.alloc_root(4)
    populate_4k(root, 0, 8, 0, True, alloc)
    leaf_pt, i = walk_to(root, 3)[-1]
    old = leaf_pt.read(i)
    assert leaf_pt.cmpxchg(i, old, REMOVED_SPTE)    # another zapper owns entry 3 now
    results = []
    zapper = threading.Thread(target=lambda: results.append(zap_root(root, True)))
    zapper.start()
    assert waiting.wait(5), "teardown did not wait for the frozen entry"
    assert zapper.is_alive()
    leaf_pt.xchg(i, old)            # its owner "gives the entry back" unchanged
    zapper.join(5)
    assert results and results[0].sptes == 8
    assert alloc.live_leaves == 0 and alloc.live_pages == 0


# ------------------------------------------------------------------ zap_range

def intersects(gfn, level, start, end):
    return start < end and gfn < end and start < gfn + KVM_PAGES_PER_HPAGE(level)


def mixed_root():
    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    populate_4k(root, 100, 3000, 1 << 20, True, alloc)
    populate_4k(root, 8 * 512, 512, 0, False, alloc)
    for k in (10, 11, 13):
        install_leaf(root, k * 512, PG_LEVEL_2M, k * 512, True, False, alloc)
    install_leaf(root, G1, PG_LEVEL_1G, G1, True, False, alloc)
    populate_4k(root, 2 * G1 + 5, 700, 0, True, alloc)
    return alloc, root


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 3 * G1), st.integers(0, G1 + 8000), st.booleans(),
       st.sampled_from([None, "always", "never"]))
def test_zap_range_removes_exactly_the_mappings_that_meet_the_range(start, length, shared,
                                                                     yields):
    alloc, root = mixed_root()
    end = start + length
    before = list(iter_leaf_mappings(root))
    should_yield = {None: None, "always": lambda _flush: True, "never": lambda _flush: False}[yields]
    freed = []
    result = zap_range(root, start, end, shared, freed.append, should_yield)
    after = list(iter_leaf_mappings(root))
    assert after == [m for m in before if not intersects(m[0], m[1], start, end)]
    assert not list(iter_leaf_mappings(root, start, end)), "invariant 10 broken"
    assert result.sptes == len(before) - len(after)
    assert result.pages == len(freed)
    assert_accounting_matches_tree(alloc, root)
    assert_freed_pages_are_dead(freed)


def test_zap_range_says_a_flush_is_owed_only_when_sptes_were_removed_since_the_last_yield():
    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    populate_4k(root, 0, 3 * 512, 0, True, alloc)     # leaves in 2M regions 0..2 only
    asked = []

    def should_yield(flush):
        asked.append(flush)
        return flush                 # yield (and "flush") exactly when one is owed

    zap_range(root, 0, 8 * 512, True, None, should_yield)
    # Removing a region's leaves owes a flush; the yield pays it, and the
    # empty regions after the last removal owe nothing.
    assert asked[:3] == [True, True, True] and not any(asked[3:]), asked
    assert count_present(root) == 0


def test_zap_range_frees_fully_covered_leaf_pages_and_clears_partial_ones_in_place():
    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    populate_4k(root, 0, 3 * 512, 0, True, alloc)
    freed = []
    result = zap_range(root, 256, 2 * 512 + 10, False, freed.append)
    assert result == (512 + 256 + 10, 1)
    assert [p.gfn for p in freed] == [512]
    assert count_present(root) == 256 + 502
    assert_accounting_matches_tree(alloc, root)


def test_an_empty_range_zaps_nothing_even_inside_a_huge_leaf():
    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    install_leaf(root, 0, PG_LEVEL_2M, 0, True, False, alloc)
    assert zap_range(root, 5, 5, True) == (0, 0)
    assert zap_range(root, 9, 3, False) == (0, 0)
    assert count_present(root) == 1


def test_zap_range_never_removes_a_whole_512g_subtree_in_one_step():
    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    populate_4k(root, 0, 1024, 0, True, alloc)
    freed = []
    zap_range(root, 0, 1 << 36, False, freed.append)
    assert max(p.level for p in freed) == PG_LEVEL_2M
    assert [p.level for p in reachable_pages(root)] == [PG_LEVEL_1G]


# ----------------------------------------------------------------- concurrency

@pytest.fixture
def busy_switching():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(old)


def run_race(root, alloc, zap_once, seconds=0.4, nfaulters=3):
    """Fault threads install leaves (shared) while ``zap_once`` runs in a loop."""
    freed, errors = [], []
    stop = threading.Event()
    retries = [0]

    def faulter(seed):
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                level = rng.choice([1, 1, 1, 1, 2, 2, 3])
                gfn = rng.randrange(0, 3 * G1)
                pfn = gfn_round_for_level(rng.randrange(1 << 30), level)
                for _ in range(1000):
                    status = install_leaf(root, gfn, level, pfn, True, True, alloc,
                                          freed.append)
                    if status is InstallStatus.OK:
                        break
                    retries[0] += 1
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    def zapper():
        rng = random.Random(99)
        try:
            while not stop.is_set():
                zap_once(freed, lambda _flush: rng.random() < 0.3)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=faulter, args=(s,)) for s in range(nfaulters)]
    threads.append(threading.Thread(target=zapper))
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads), "a racing thread hung"
    assert not errors, errors
    return freed, retries[0]


def assert_race_left_consistent_state(root, alloc, freed):
    final = []
    zap_root(root, False, final.append)
    freed.extend(final)
    assert alloc.live_pages == 0, alloc.stats()
    assert alloc.live_leaves == 0, alloc.stats()
    assert count_present(root) == 0 and not root.spt.any()
    assert alloc.allocated == len(freed) + alloc.discarded, "a page table was lost"
    assert_freed_pages_are_dead(freed)


def test_faults_racing_a_shared_zap_root_end_with_consistent_accounting(busy_switching):
    alloc = PageAllocator()
    root = alloc.alloc_root(4)

    def zap_once(freed, should_yield):
        zap_root(root, True, freed.append, should_yield)

    freed, _retries = run_race(root, alloc, zap_once)
    assert freed, "the zapper never freed anything: the race did not happen"
    assert_race_left_consistent_state(root, alloc, freed)


def test_faults_racing_a_shared_zap_range_end_with_consistent_accounting(busy_switching):
    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    rng = random.Random(5)

    def zap_once(freed, should_yield):
        start = rng.randrange(0, 3 * G1)
        zap_range(root, start, start + rng.choice([7, 600, 5000, G1]), True, freed.append,
                  should_yield)

    freed, _retries = run_race(root, alloc, zap_once)
    assert_race_left_consistent_state(root, alloc, freed)


def test_faults_racing_zaps_splits_and_write_protection_end_consistent(busy_switching):
    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    rng = random.Random(11)

    def one_op(freed, should_yield):
        start = rng.randrange(0, 3 * G1)
        end = start + rng.choice([7, 600, 5000, G1])
        op = rng.randrange(4)
        if op == 0:
            zap_root(root, True, freed.append, should_yield)
        elif op == 1:
            zap_range(root, start, end, True, freed.append, should_yield)
        elif op == 2:
            split_huge_pages(root, start, end, alloc, shared=True, should_yield=should_yield)
        else:
            write_protect_range(root, start, end, True, should_yield)

    freed, _retries = run_race(root, alloc, one_op)
    assert_race_left_consistent_state(root, alloc, freed)


def test_mappings_installed_after_a_race_map_what_the_fault_asked_for(busy_switching):
    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    run_race(root, alloc, lambda freed, sy: zap_root(root, True, freed.append, sy),
             seconds=0.2)
    for gfn, level, spte in iter_leaf_mappings(root):
        assert gfn == gfn_round_for_level(gfn, level)
        assert spte_pfn(spte) % KVM_PAGES_PER_HPAGE(level) == 0
    zap_root(root, False)
    assert alloc.live_pages == 0 and alloc.live_leaves == 0
