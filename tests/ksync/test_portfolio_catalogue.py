"""The default portfolio against the bug catalogue and the clean model.

A fast campaign per catalogued bug (all but the ``latency`` ones) from seed
0 under ``portfolio``, making the runs ``tdpmmu fuzz --scenario S --zap Z
--bug NAME`` makes by default (the scenario's default program with the
bug's parameters), and one letting each seed pick the program
(``variant=seed``, as the catalogue campaigns do): each must find the bug's
expected kind, and a finding must replay from its schedule string alone.  The same scenarios without bugs stay clean over seeds that
cover every member several times.  tools/strategy_power.py measures the
full budget (100 campaigns of 500 runs); BENCHMARKS.md has its table.
"""

from __future__ import annotations

import pytest

from ksync.portfolio import DEFAULT_MEMBERS
from tdpmmu.bugs import BY_NAME, CATALOGUE
from tdpmmu.harness import run_scenario
from tdpmmu.kvm import ZAP_MODES
from tdpmmu.scenarios import SCENARIOS

#: Runs a test campaign may take: well past the measured medians (at most
#: ~15 runs), so a model change that moves the seeds does not flake it.
BUDGET = 150
BUGS = [b.name for b in CATALOGUE if b.expected_kind != "latency"]


def _run(name: str, seed: int, vary: bool, schedule: str | None = None,
         stacks: bool = False):
    bug = BY_NAME[name]
    params = {"variant": seed, **dict(bug.params)} if vary else dict(bug.params)
    return run_scenario(bug.scenario, zap=bug.zap, seed=seed, strategy="portfolio",
                        schedule=schedule, bugs=(name,), stacks=stacks, params=params)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("vary", (False, True), ids=("fuzz-program", "variant-seed"))
@pytest.mark.parametrize("name", BUGS)
def test_portfolio_campaign_from_seed_zero_finds_each_catalogued_bug(name, vary):
    want = BY_NAME[name].expected_kind
    for seed in range(BUDGET):
        r = _run(name, seed, vary)
        if want in r.kinds():
            break
    else:
        pytest.fail(f"{name}: no {want} in {BUDGET} portfolio runs from seed 0")
    again = _run(name, seed, vary, schedule=r.schedule, stacks=True)
    assert want in again.kinds() and again.schedule == r.schedule, (name, seed)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_portfolio_is_silent_on_the_correct_model(scenario):
    # Three full cycles of the members, in every zap generation.
    for zap in ZAP_MODES:
        for seed in range(3 * len(DEFAULT_MEMBERS)):
            r = run_scenario(scenario, zap=zap, seed=seed, strategy="portfolio",
                             params={"variant": seed}, stacks=False)
            assert r.clean, (scenario, zap, seed, r.kinds(),
                             r.reports[0].title if r.reports else r.error[-300:])


def test_campaigns_default_to_the_portfolio_and_random_walk_stays_selectable():
    from tdpmmu.campaign import CampaignSpec
    from tdpmmu.cli import build_parser

    assert CampaignSpec(scenario="teardown").strategy_spec() == "portfolio"
    parser = build_parser()
    fuzz = parser.parse_args(["fuzz", "--scenario", "teardown"])
    assert fuzz.strategy == "portfolio"
    assert parser.parse_args(["fuzz", "--scenario", "teardown", "--strategy", "random"]
                             ).strategy == "random"
    assert parser.parse_args(["run", "x.py"]).strategy == "portfolio"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", [b.name for b in CATALOGUE if b.params])
def test_portfolio_is_silent_on_each_bug_scenario_and_parameters_without_the_bug(name):
    bug = BY_NAME[name]
    for seed in range(2 * len(DEFAULT_MEMBERS)):
        r = run_scenario(bug.scenario, zap=bug.zap, seed=seed, strategy="portfolio",
                         params={"variant": seed, **dict(bug.params)}, stacks=False)
        assert r.clean, (name, seed, r.kinds(),
                         r.reports[0].title if r.reports else r.error[-300:])
