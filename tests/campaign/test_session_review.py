"""Review of the stackless campaign flow: a first pass without stacks, then
``verify.with_stacks`` replays each finding with stacks on.  Whatever that
replay does (diverge, come back clean, file other kinds), the record keeps
reports and the finding is flagged, never lost or crashing the summary.
"""

from __future__ import annotations

import itertools

import pytest

import ksync
from tdpmmu.campaign import CampaignSpec
from tdpmmu.campaign.findings import group_findings
from tdpmmu.campaign.worker import run_one
from tdpmmu.scenarios import SCENARIOS, Scenario

pytestmark = pytest.mark.timeout(30)


def _first_run_differs(later: str | None) -> Scenario:
    """A scenario whose first run in this process files a ``warn`` and later
    runs a ``later`` report, or none (state the runtime does not control)."""
    calls = itertools.count()

    def body(*, zap: str, bugs: frozenset[str]) -> None:
        rt = ksync.current_runtime()
        rt.spawn(lambda: None, name="helper").join()
        if next(calls) == 0:
            rt.report("warn", "first run only", "WARNING: seen on the first run only")
        elif later is not None:
            rt.report(later, "later runs", "WARNING: seen on later runs")
    return Scenario("toy_first_run_only", "reports differ after its first run", body, {})


@pytest.mark.parametrize("later", [None, "data-race"])
def test_a_finding_whose_replay_with_stacks_files_other_kinds_keeps_its_reports_and_is_flagged(
        later, monkeypatch):
    monkeypatch.setitem(SCENARIOS, "toy_first_run_only", _first_run_differs(later))
    spec = CampaignSpec("toy_first_run_only", runs=1)
    rec = run_one(spec.to_dict(), 0)
    assert not rec["clean"]
    assert [r["kind"] for r in rec["reports"]] == ["warn"]
    assert not rec["reproducible"] and "uncontrolled nondeterminism" in rec["divergence"]
    [f] = group_findings(spec, [rec])
    assert (f.kind, f.title, f.reproducible) == ("warn", "first run only", False)
