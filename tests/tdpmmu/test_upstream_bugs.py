"""The catalogue entries grown from upstream fixes (issue 15): each is found, and only with it.

Each bug fires under a known seed exactly as ``tdpmmu fuzz --strategy pct``
runs it (``fuzz_campaign``: the bug's scenario, generation and parameters,
the default program, PCT with ``k`` measured at that seed), with its
expected report kind.  The same scenario and parameters without the bug
stay clean over many seeds under both strategies.  The full rates (100
campaigns of at most 500 runs per bug) come from ``tools/bug_campaign.py
--mode fuzz-pct --new`` and are kept out of the suite.
"""

from __future__ import annotations

import pytest

from tdpmmu.bugs import BY_NAME
from tdpmmu.harness import RunResult, run_scenario
from tdpmmu.scenarios.findings import fuzz_campaign

#: bug -> a seed at which one fuzz-pct run (k measured at that seed) files its kind.
#: A change to the scheduler or to the model's scheduling points moves these
#: seeds; re-pin with the first seed s for which fuzz_campaign(name, s, 1).found.
KNOWN_SEED = {
    "root-not-freed-after-yield": 75,
    "fault-on-invalid-root": 0,
    "zap-all-skips-top-level-sptes": 0,
    "root-iter-filters-address-space": 0,
    "zap-invalidated-assumes-reference": 0,
    "plain-store-of-volatile-spte": 1,
    "iter-advances-after-restart": 165,
    "notifier-unmap-without-root-ref": 33,
}
#: Clean seeds per strategy for each bug's scenario without the bug.
CLEAN_SEEDS = range(12)


def test_the_new_entries_cite_a_fix_and_name_a_checker_kind() -> None:
    from ksync import KINDS
    for name in KNOWN_SEED:
        bug = BY_NAME[name]
        assert bug.expected_kind in KINDS, name
        # The commit subject of the upstream fix, with the release it went into.
        assert bug.kernel_ref.startswith("KVM: x86/mmu: ") and "(" in bug.kernel_ref, name


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(KNOWN_SEED))
def test_bug_is_found_by_one_fuzz_pct_run_at_its_known_seed(name: str) -> None:
    res = fuzz_campaign(name, KNOWN_SEED[name], 1)
    assert res.found, (name, res.kinds)


def _clean_run(name: str, seed: int, strategy: str) -> RunResult:
    bug = BY_NAME[name]
    return run_scenario(bug.scenario, zap=bug.zap, seed=seed, strategy=strategy,
                        params={"variant": seed, **dict(bug.params)}, stacks=False)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(KNOWN_SEED))
def test_bug_scenario_with_its_parameters_is_clean_without_it(name: str) -> None:
    for seed in CLEAN_SEEDS:
        for strategy in ("random", "pct"):
            r = _clean_run(name, seed, strategy)
            if not r.clean:
                # A controlled run is a pure function of its arguments: a report
                # that does not come back on the same run was the hung-task
                # watchdog's wall clock on an overloaded machine.
                r = _clean_run(name, seed, strategy)
            assert r.clean, (name, seed, strategy, r.kinds(), [x.title for x in r.reports],
                             r.error[-500:])


def test_iterator_restart_bug_skips_the_rest_of_the_top_level_entry() -> None:
    # The mechanism of iter-advances-after-restart, without a runtime: a walk
    # told to yield at its second position restarts there (correct), or steps
    # past the whole top-level entry (the bug).
    from tdpmmu.iter import TdpIter
    from tdpmmu.pagetable import PageAllocator, populate_4k

    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    populate_4k(root, 0, 1024, 1 << 20, True, alloc)

    def walk(skips: bool) -> list[int]:
        asked = []

        def should_yield(flush: bool = False) -> bool:
            asked.append(True)
            return len(asked) == 1

        should_yield.restart_skips = skips  # type: ignore[attr-defined]
        return [pos.gfn for pos in TdpIter(root, 2, 0, 1024)
                if not pos.cond_resched(should_yield) and pos.level == 2]

    assert walk(False) == [0, 512]
    assert walk(True) == [0]
