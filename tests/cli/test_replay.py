"""``tdpmmu replay``: identical reports from a schedule; divergence and bad input exit 2."""

from __future__ import annotations

import json

import pytest

from tdpmmu.cli import main
from tdpmmu.harness import run_scenario

from .util import exit_code

SMALL = ["--param", "vcpus=2", "--param", "pages=8", "--param", "reloads=1"]


def test_replay_reproduces_the_run_and_its_schedule(capsys):
    r = run_scenario("root_reload_storm", seed=11, params={"vcpus": 2, "pages": 8,
                                                           "reloads": 1})
    code = main(["replay", "--scenario", "root_reload_storm", *SMALL, "--seed", "11",
                 "--schedule", r.schedule, "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == (0 if r.clean else 1)
    assert doc["schedule"] == r.schedule
    assert [(x["kind"], x["title"]) for x in doc["reports"]] == [
        (x.kind, x.title) for x in r.reports]


def test_replay_reads_a_schedule_file_and_prints_a_trace(tmp_path, capsys):
    r = run_scenario("root_reload_storm", seed=2, params={"vcpus": 2, "pages": 8,
                                                          "reloads": 1})
    f = tmp_path / "sched"
    f.write_text(r.schedule + "\n")
    main(["replay", "--scenario", "root_reload_storm", *SMALL, "--seed", "2",
          "--schedule", f"@{f}", "--trace"])
    out = capsys.readouterr().out
    assert "acquire" in out and f"schedule: {r.schedule}" in out


def test_replay_of_a_schedule_that_no_longer_fits_names_the_decision(capsys):
    code = main(["replay", "--scenario", "root_reload_storm", *SMALL, "--schedule", "5x3"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "diverged at decision 0" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("argv, needle", [
    (["--scenario", "root_reload_storm"], "--schedule"),
    (["--scenario", "nope", "--schedule", "0"], "unknown scenario"),
    (["--scenario", "root_reload_storm", "--schedule", "1.x2"], "unreadable schedule"),
    (["--scenario", "root_reload_storm", "--schedule", "@/no/such/file"], "cannot read"),
    (["--finding", "/no/such/finding.json"], "cannot read"),
    (["--scenario", "root_reload_storm", "--bug", "nope", "--schedule", "0"], "unknown bug"),
    (["--scenario", "root_reload_storm", "--seed", "-1", "--schedule", "0"], "negative"),
])
def test_replay_bad_input_is_one_line_and_exit_two(capsys, argv, needle):
    assert exit_code(["replay", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_replay_rejects_a_file_that_is_not_a_finding(tmp_path, capsys):
    f = tmp_path / "x.json"
    f.write_text('{"scenario": "root_reload_storm"}')
    assert main(["replay", "--finding", str(f)]) == 2
    assert "not a saved finding" in capsys.readouterr().err
