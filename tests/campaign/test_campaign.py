"""Campaigns: results as they arrive, resume after a kill, findings and their replays."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tdpmmu.campaign import CampaignSpec, run_campaign
from tdpmmu.campaign.runner import CampaignError
from tdpmmu.cli import main

from .util import records

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(60)
def test_campaign_stores_every_run_and_reports_distinct_findings(toys, tmp_path):
    spec = CampaignSpec("toy_lost_update", runs=30, seed=100)
    o = run_campaign(spec, tmp_path, jobs=2)
    doc = o.to_json()
    assert {"runs", "clean", "executions_per_second", "findings"} <= doc.keys()
    assert doc["runs"] == 30 and 0 < doc["clean"] < 30
    [f] = doc["findings"]
    assert {"kind", "title", "seed", "schedule", "replay_command"} <= f.keys()
    assert (f["kind"], f["title"]) == ("warn", "lost update")
    assert f["reproducible"] and f["count"] == 30 - doc["clean"]
    recs = records(tmp_path)
    assert recs[0]["type"] == "campaign"
    assert sorted(r["seed"] for r in recs if r["type"] == "run") == list(range(100, 130))
    shrunk = [r for r in recs if r["type"] == "minimised"]
    assert len(shrunk) == 1 and shrunk[0]["decisions"] <= shrunk[0]["original_decisions"]
    assert f["schedule"] == shrunk[0]["schedule"]


def test_replay_command_of_a_finding_reproduces_its_report(toys, tmp_path, capsys):
    o = run_campaign(CampaignSpec("toy_lost_update", runs=20, strategy="pct", depth=2),
                     tmp_path, jobs=1)
    f = o.findings[0]
    argv = shlex.split(f.replay_command)
    assert argv[:2] == ["tdpmmu", "replay"]
    assert main(argv[1:] + ["--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert [(r["kind"], r["title"]) for r in doc["reports"]] == [(f.kind, f.title)]
    assert doc["schedule"] == f.schedule


def test_campaign_flags_findings_that_do_not_replay(toys, tmp_path):
    o = run_campaign(CampaignSpec("toy_flaky", runs=40), tmp_path, jobs=2, minimise=False)
    flaky = [f for f in o.findings if not f.reproducible]
    assert flaky, [f.to_json() for f in o.findings]
    assert all("uncontrolled nondeterminism" in f.divergence for f in flaky)
    assert all("divergence" in f.to_json() for f in flaky)


def test_existing_results_need_resume_and_the_same_campaign(toys, tmp_path):
    run_campaign(CampaignSpec("toy_lost_update", runs=3), tmp_path, minimise=False)
    with pytest.raises(CampaignError, match="--resume"):
        run_campaign(CampaignSpec("toy_lost_update", runs=3), tmp_path)
    with pytest.raises(CampaignError, match="another campaign.*seed"):
        run_campaign(CampaignSpec("toy_lost_update", runs=3, seed=9), tmp_path, resume=True)


def test_time_limit_stops_handing_out_runs_and_resume_finishes(toys, tmp_path):
    spec = CampaignSpec("toy_lost_update", runs=100_000, params={"spin": 50})
    o = run_campaign(spec, tmp_path, jobs=2, time_limit=0.5, minimise=False)
    assert not o.complete and 0 < o.runs < 100_000
    small = CampaignSpec("toy_lost_update", runs=o.runs + 5, params={"spin": 50})
    o2 = run_campaign(small, tmp_path, jobs=2, resume=True, minimise=False)
    assert o2.complete and o2.runs == o.runs + 5 and o2.session_runs == 5


def test_a_worker_process_dying_stops_the_campaign_with_a_clear_error(toys, tmp_path):
    with pytest.raises(CampaignError, match="worker process died.*--resume"):
        run_campaign(CampaignSpec("toy_crash", runs=4), tmp_path, jobs=1, minimise=False)
    assert records(tmp_path)[0]["type"] == "campaign"


def test_log_is_written_by_the_manager_and_the_workers(toys, tmp_path):
    run_campaign(CampaignSpec("toy_lost_update", runs=12), tmp_path, jobs=2, minimise=False)
    lines = (tmp_path / "campaign.log").read_text().splitlines()
    pids = {ln.split()[2] for ln in lines}
    assert any("campaign done" in ln for ln in lines)
    assert any("lost update" in ln for ln in lines)
    assert len(pids) >= 2


#: Runs of the kill test: enough that no machine is fast enough to finish
#: them between two polls, few enough that the resume takes seconds.
KILL_RUNS = 1500


@pytest.mark.timeout(90)
def test_campaign_killed_midway_loses_no_finished_result_and_resumes(tmp_path):
    out = tmp_path / "c"
    driver = ("import sys; sys.path.insert(0, sys.argv[1])\n"
              "from tests.campaign.toyscenario import register; register()\n"
              "from tdpmmu.cli import main\n"
              "sys.exit(main(['fuzz', '--scenario', 'toy_lost_update', '--param', 'spin=100',"
              " '--runs', sys.argv[3], '--jobs', '2', '--out', sys.argv[2], '-q']))\n")
    proc = subprocess.Popen([sys.executable, "-c", driver, str(ROOT), str(out), str(KILL_RUNS)],
                            start_new_session=True, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            # Count run records, not lines: the header and findings are lines too.
            path = out / "results.jsonl"
            if path.exists() and sum(r["type"] == "run" for r in records(out)) >= 20:
                break
            assert proc.poll() is None, "the campaign ended before it could be killed"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    before = {r["seed"]: r for r in records(out) if r["type"] == "run"}
    assert 20 <= len(before) < KILL_RUNS

    from .toyscenario import toy_scenarios
    with toy_scenarios():
        o = run_campaign(CampaignSpec("toy_lost_update", runs=KILL_RUNS, params={"spin": 100}),
                         out, jobs=2, resume=True, minimise=False)
    after = [r for r in records(out) if r["type"] == "run"]
    seeds = [r["seed"] for r in after]
    assert sorted(seeds) == list(range(KILL_RUNS)), "every seed exactly once"
    assert o.session_runs == KILL_RUNS - len(before) and o.complete
    for r in after:
        if r["seed"] in before:
            assert r == before[r["seed"]]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity here")
def test_each_worker_gets_a_cpu_of_its_own_unless_the_user_chose(monkeypatch):
    from tdpmmu.campaign.runner import pin_worker
    cpus = sorted(os.sched_getaffinity(0))
    # Record the variable with monkeypatch first, so whatever pin_worker sets is undone.
    monkeypatch.setenv("KSYNC_PIN", "")
    for index in range(len(cpus) + 1):
        monkeypatch.delenv("KSYNC_PIN", raising=False)
        pin_worker(index, len(cpus))
        assert os.environ["KSYNC_PIN"] == str(cpus[index % len(cpus)])
    monkeypatch.delenv("KSYNC_PIN", raising=False)
    pin_worker(0, len(cpus) - 1)       # fewer workers than CPUs: each run picks (auto)
    assert "KSYNC_PIN" not in os.environ
    monkeypatch.setenv("KSYNC_PIN", "off")
    pin_worker(0, len(cpus))
    assert os.environ["KSYNC_PIN"] == "off"


@pytest.mark.timeout(120)
def test_a_finding_is_reported_from_a_replay_with_stacks_though_runs_save_none():
    from tdpmmu.campaign.worker import run_one
    spec = CampaignSpec("memslot_churn", bugs=("flush-under-mmu-lock",))
    for seed in range(60):
        rec = run_one(spec.to_dict(), seed)
        if not rec["clean"]:
            break
    else:
        pytest.fail("flush-under-mmu-lock never showed in 60 runs")
    assert rec["reproducible"], rec["divergence"]
    [rep] = [r for r in rec["reports"] if r["kind"] == "circular-locking-dependency"]
    assert "not recorded" not in rep["text"]
    assert "memslot" in rep["text"] or "zap" in rep["text"]     # frames of the model
