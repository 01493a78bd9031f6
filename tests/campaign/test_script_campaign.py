"""A user's script as a campaign's program: runs, findings, replay, shrinking, PCT's k."""

from __future__ import annotations

import json
import shlex
import textwrap

import pytest

from tdpmmu.campaign import CampaignSpec, run_campaign
from tdpmmu.cli import main

LOST_UPDATE = textwrap.dedent("""
    import sys
    import ksync
    rt = ksync.current_runtime()
    counter = ksync.Atomic(0, name="counter")
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    def inc():
        v = counter.read()
        counter.set(v + 1)
    ts = [rt.spawn(inc, name=f"inc{i}") for i in range(n)]
    for t in ts:
        rt.join(t)
    print("SCRIPT-SAYS-HELLO")
    if counter.read() != n:
        rt.report("warn", "lost update", "WARNING: lost update")
""")


@pytest.fixture
def lost_update(tmp_path):
    p = tmp_path / "lost_update.py"
    p.write_text(LOST_UPDATE)
    return p


def test_script_campaign_dedups_shrinks_and_its_replay_command_reproduces(
        lost_update, tmp_path, capfd):
    spec = CampaignSpec.for_script(lost_update, ["3"], runs=16, strategy="random", seed=1)
    o = run_campaign(spec, tmp_path / "out", jobs=2)
    assert o.runs == 16 and 0 < o.clean < 16
    [f] = o.findings
    assert (f.kind, f.title, f.reproducible) == ("warn", "lost update", True)
    assert f.count == 16 - o.clean
    assert f.minimised is not None and f.minimised["decisions"] <= \
        f.minimised["original_decisions"]
    argv = shlex.split(f.replay_command)
    assert argv[:2] == ["tdpmmu", "run"] and argv[-3:] == [str(lost_update), "--", "3"]
    assert "SCRIPT-SAYS-HELLO" not in capfd.readouterr().out   # 16 runs print nothing
    assert main(["run", "--json", *argv[2:]]) == 1
    doc = json.loads(capfd.readouterr().out)
    assert [(r["kind"], r["title"]) for r in doc["reports"]] == [("warn", "lost update")]
    assert doc["schedule"] == f.schedule


def test_script_arguments_reach_every_run(lost_update, tmp_path):
    # One thread cannot lose an update: a clean campaign proves argv[1] arrived.
    spec = CampaignSpec.for_script(lost_update, ["1"], runs=6, strategy="random")
    o = run_campaign(spec, tmp_path, jobs=1, minimise=False)
    assert o.runs == 6 and o.clean == 6 and not o.findings
    cmd = CampaignSpec.for_script(lost_update, ["-v"]).replay_command(0, "0x1")
    assert cmd == f"tdpmmu run --seed 0 --schedule 0x1 {lost_update} -- -v"


def test_pct_script_campaign_measures_k_and_stores_it(lost_update, tmp_path):
    spec = CampaignSpec.for_script(lost_update, runs=8, strategy="pct", depth=2)
    o = run_campaign(spec, tmp_path, jobs=1, minimise=False)
    head = json.loads((tmp_path / "results.jsonl").read_text().splitlines()[0])
    assert o.spec.steps and head["spec"]["steps"] == o.spec.steps
    assert o.spec.strategy_spec() == f"pct:d=2,k={o.spec.steps}"


def test_a_script_that_raises_is_an_error_finding(tmp_path):
    p = tmp_path / "boom.py"
    p.write_text("raise RuntimeError('boom')\n")
    o = run_campaign(CampaignSpec.for_script(p, runs=3, strategy="random"), tmp_path / "o",
                     jobs=1, minimise=False)
    [f] = o.findings
    assert f.kind == "error" and f.title == "RuntimeError: boom" and f.count == 3
