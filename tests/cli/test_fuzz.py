"""``tdpmmu fuzz``: summary, --json shape, saved findings, exit codes, bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tdpmmu.cli import main

from ..campaign.toyscenario import toy_scenarios
from .util import exit_code


@pytest.fixture(autouse=True)
def toys() -> Iterator[None]:
    with toy_scenarios():
        yield


def test_fuzz_json_shape_and_exit_one_on_findings(tmp_path, capsys):
    argv = ["fuzz", "--scenario", "toy_lost_update", "--runs", "25", "--seed", "7",
            "--jobs", "2", "--out", str(tmp_path), "--json", "-q"]
    assert main(argv) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["runs"] == 25 and isinstance(doc["executions_per_second"], float)
    assert 0 <= doc["clean"] < 25
    for f in doc["findings"]:
        assert {"kind", "title", "seed", "schedule", "replay_command"} <= f.keys()
        assert f["replay_command"].startswith("tdpmmu replay --scenario toy_lost_update")


def test_fuzz_summary_prints_report_and_replay_commands(tmp_path, capsys):
    argv = ["fuzz", "--scenario", "toy_lost_update", "--param", "threads=3", "--runs", "20",
            "--strategy", "pct", "--depth", "2", "--jobs", "1", "--out", str(tmp_path), "-q"]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "warn: lost update" in out and "WARNING: counter is" in out
    assert "replay: tdpmmu replay --scenario toy_lost_update" in out
    assert "--param threads=3" in out
    saved = tmp_path / "findings" / "1.json"
    assert f"tdpmmu replay --finding {saved}" in out
    assert main(["replay", "--finding", str(saved), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["reports"][0]["title"] == "lost update"


def test_fuzz_clean_campaign_exits_zero(tmp_path, capsys):
    argv = ["fuzz", "--scenario", "toy_lost_update", "--param", "threads=1", "--runs", "5",
            "--out", str(tmp_path), "--json", "-q"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["findings"] == [] and doc["clean"] == 5


def test_fuzz_progress_line_goes_to_stderr(tmp_path, capsys):
    argv = ["fuzz", "--scenario", "toy_lost_update", "--runs", "4", "--out", str(tmp_path),
            "--json"]
    main(argv)
    cap = capsys.readouterr()
    json.loads(cap.out)
    assert "4/4 runs" in cap.err and "runs/s" in cap.err and "findings" in cap.err


@pytest.mark.parametrize("extra, needle", [
    (["--scenario", "no_such"], "unknown scenario 'no_such'"),
    (["--scenario", "toy_lost_update", "--bug", "no-such-bug"], "unknown bug"),
    (["--scenario", "toy_lost_update", "--runs", "-1"], "negative"),
    (["--scenario", "toy_lost_update", "--jobs", "0"], "count >= 1"),
    (["--scenario", "toy_lost_update", "--zap", "lazy"], "zap='lazy'"),
    (["--scenario", "toy_lost_update", "--param", "nope=1"], "no parameter(s) nope"),
    (["--scenario", "toy_lost_update", "--strategy", "dfs"], "invalid choice"),
    (["--scenario", "toy_lost_update", "--time-limit", "-5"], "positive"),
])
def test_fuzz_bad_input_is_one_line_and_exit_two(tmp_path, capsys, extra, needle):
    assert exit_code(["fuzz", *extra, "--out", str(tmp_path), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_fuzz_refuses_to_overwrite_a_campaign_without_resume(tmp_path, capsys):
    argv = ["fuzz", "--scenario", "toy_lost_update", "--runs", "2", "--out", str(tmp_path),
            "-q", "--json"]
    main(argv)
    capsys.readouterr()
    assert main(argv) == 2
    assert "--resume" in capsys.readouterr().err
    assert main([*argv, "--resume", "--runs", "4"]) in (0, 1)
    assert json.loads(capsys.readouterr().out)["runs"] == 4
