"""``--bug`` brings the model variant a bug lives in (``Bug.params``); replay commands round-trip."""

from __future__ import annotations

import json
import shlex

import pytest

from tdpmmu.campaign.spec import _param_text
from tdpmmu.cli import main
from tdpmmu.cli.common import bug_params, parse_params


def test_a_bug_brings_its_scenario_parameters_only_in_its_own_scenario():
    assert bug_params("teardown", ["no-users-count-check"]) == {"zap_wq": "system"}
    assert bug_params("memslot_churn", ["no-users-count-check"]) == {}
    assert bug_params("teardown", ["no-flush-before-free"]) == {}


@pytest.mark.parametrize("value", ["system", "kvm", "True", "two words", 3, 0.5, True, None])
def test_param_text_parses_back_to_the_same_value(value):
    text = f"v={_param_text(value)}"
    assert parse_params(shlex.split(shlex.quote(text))) == {"v": value}


@pytest.mark.timeout(60)
def test_fuzz_with_the_bug_alone_finds_it_and_its_replay_reproduces(tmp_path, capsys):
    argv = ["fuzz", "--scenario", "teardown", "--bug", "no-users-count-check", "--runs", "12",
            "--jobs", "1", "--out", str(tmp_path), "--json", "-q", "--no-minimise"]
    assert main(argv) == 1
    doc = json.loads(capsys.readouterr().out)
    # Distinct findings: the late worker's use-after-free of struct kvm, and
    # (in runs where it comes later still) the WARN on roots left at uninit.
    kinds_seen = set()
    for f in doc["findings"]:
        cmd = shlex.split(f["replay_command"])
        assert "zap_wq=system" in cmd
        assert main(cmd[1:] + ["--json"]) == 1
        kinds = [r["kind"] for r in json.loads(capsys.readouterr().out)["reports"]]
        assert f["kind"] in kinds
        kinds_seen.update(kinds)
    assert "use-after-free" in kinds_seen
