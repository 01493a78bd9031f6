"""Every catalogued bug is found the same with stacks off (a campaign's first pass)."""

from __future__ import annotations

import pytest

from tdpmmu.bugs import CATALOGUE
from tdpmmu.harness import run_scenario
from tdpmmu.scenarios import SCENARIOS

BUGS = [b for b in CATALOGUE if b.scenario in SCENARIOS and b.expected_kind != "latency"]


@pytest.mark.parametrize("bug", BUGS, ids=[b.name for b in BUGS])
def test_a_run_without_stacks_files_the_same_kinds_on_the_same_schedule(bug):
    """Compared seed by seed until the bug has shown at least once (not a vacuous pass)."""
    found = compared = 0
    for seed in range(80):
        # As the bug campaigns run it: the seed picks the program variant too.
        params = {"variant": seed, **dict(bug.params)}
        kw = dict(zap=bug.zap, bugs=(bug.name,), params=params, seed=seed,
                  strategy=bug.strategy, max_steps=20_000)
        full = run_scenario(bug.scenario, **kw)
        bare = run_scenario(bug.scenario, stacks=False, **kw)
        assert bare.schedule == full.schedule, f"seed {seed}"
        assert set(bare.kinds()) == set(full.kinds()), f"seed {seed}"
        compared += 1
        found += bug.expected_kind in full.kinds()
        if found and compared >= 4:
            break
    assert found, f"{bug.name} never showed in {compared} seeds"
