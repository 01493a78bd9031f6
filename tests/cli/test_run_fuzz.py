"""``tdpmmu run SCRIPT.py --fuzz N``: a plain script as a campaign, from the command line."""

from __future__ import annotations

import json
import shlex
import textwrap
from pathlib import Path

import pytest

from tdpmmu.cli import main

from .test_run import CLEAN  # the same clean script as plain `tdpmmu run` runs
from .util import exit_code

ABBA = textwrap.dedent("""
    import ksync
    rt = ksync.current_runtime()
    a, b = ksync.SpinLock("A"), ksync.SpinLock("B")
    def ab():
        with a, b:
            pass
    def ba():
        with b, a:
            pass
    for t in (rt.spawn(ab, name="t1"), rt.spawn(ba, name="t2")):
        rt.join(t)
""")



@pytest.fixture
def script(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)         # the default --out is relative to here

    def write(text: str, name: str = "s.py") -> str:
        p = tmp_path / name
        p.write_text(text)
        return str(p)
    return write


def test_fuzz_prints_each_distinct_finding_once_with_a_replay_that_reproduces(script, capsys):
    path = script(ABBA, "abba.py")
    assert main(["run", path, "--fuzz", "12", "--strategy", "random", "-j", "2", "-q"]) == 1
    out = capsys.readouterr().out
    lines = out.rstrip().splitlines()
    assert lines[0].startswith("script abba.py, strategy random: 12 runs, ")
    # Two opposite lock orders, each a finding however many runs saw it.
    assert out.count("finding 1:") == 1 and out.count("finding 2:") == 1
    assert "finding 3:" not in out
    assert out.count("circular-locking-dependency: possible circular locking") == 2
    assert "schedule shrunk from" in out
    replays = [ln.removeprefix("replay: ") for ln in lines if ln.startswith("replay: ")]
    assert len(replays) == 2
    default = Path("tdpmmu-fuzz")
    [campaign] = default.iterdir()
    assert campaign.name.startswith("script-abba-random-s0-")
    assert lines[-1].startswith(f"summary: {campaign / 'summary.html'}")
    saved = json.loads((campaign / "findings" / "1.json").read_text())
    assert saved["replay_command"] == replays[0] and saved["script"] == path
    argv = shlex.split(replays[0])
    assert argv[:2] == ["tdpmmu", "run"] and argv[-1] == path
    assert main(argv[1:] + ["--json"]) == 1
    [rep] = json.loads(capsys.readouterr().out)["reports"]
    assert rep["kind"] == "circular-locking-dependency"


def test_fuzz_json_of_a_clean_script_with_arguments_exits_zero(script, capsys):
    path = script(CLEAN)
    # Options first, then SCRIPT and its arguments (after `--` they may start with a dash).
    assert main(["run", "--fuzz", "5", "--json", "-j", "1", path, "--", "3"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["runs"] == 5 and doc["clean"] == 5 and doc["findings"] == []
    assert doc["summary"][0].endswith("summary.html") and Path(doc["summary"][0]).is_file()


def test_fuzz_pct_and_resume(script, capsys):
    path = script(ABBA)
    argv = ["run", path, "--fuzz", "4", "--strategy", "pct", "--depth", "2", "-j", "1",
            "--no-minimise", "--json"]
    assert main(argv) == 1
    first = json.loads(capsys.readouterr().out)
    assert first["runs"] == 4
    assert exit_code(argv) == 2
    assert "--resume" in capsys.readouterr().err
    argv[argv.index("4")] = "6"
    assert main([*argv, "--resume"]) == 1
    assert json.loads(capsys.readouterr().out)["runs"] == 6


@pytest.mark.parametrize("argv, needle", [
    (["--fuzz", "0"], "0 is not allowed here; give a count >= 1"),
    (["--fuzz", "-2"], "-2 is negative"),
    (["--fuzz", "lots"], "'lots' is not an integer"),
    (["--fuzz", "3", "--jobs", "0"], "count >= 1"),
    (["--fuzz", "3", "--strategy", "explore"], "--strategy explore enumerates"),
    (["--fuzz", "3", "--strategy", "dfs"], "invalid choice: 'dfs'"),
    (["--fuzz", "3", "--time-limit", "-1"], "positive, finite number of seconds"),
    (["--fuzz", "3", "--mode", "free"], "--mode free is for one run"),
    (["--fuzz", "3", "--schedule", "0x1"], "--schedule is for one run"),
    (["--fuzz", "3", "--timeline", "t.png"], "--timeline is for one run"),
    (["--fuzz", "3", "--out", "{file}"], "exists and is not a directory"),
    (["--jobs", "2"], "--jobs is a campaign option: add --fuzz N"),
    (["--resume"], "--resume is a campaign option"),
    (["--no-minimise"], "--no-minimise is a campaign option"),
])
def test_bad_campaign_values_are_one_line_and_exit_two(script, capsys, argv, needle):
    path = script(CLEAN)
    f = script("", "a-file")
    assert exit_code(["run", path, *(a.format(file=f) for a in argv)]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("which, needle", [("dir", "is a directory, not a script"),
                                           ("missing", "no such script")])
def test_bad_script_paths_are_one_line_and_exit_two(tmp_path, capsys, which, needle):
    path = tmp_path if which == "dir" else tmp_path / "nope.py"
    assert exit_code(["run", str(path), "--fuzz", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_replay_finding_of_a_script_campaign_replays_the_script(script, capsys):
    path = script(ABBA, "abba.py")
    assert main(["run", path, "--fuzz", "6", "--strategy", "random", "-j", "1", "-q"]) == 1
    capsys.readouterr()
    [campaign] = Path("tdpmmu-fuzz").iterdir()
    saved = campaign / "findings" / "1.json"
    finding = json.loads(saved.read_text())
    assert main(["replay", "--finding", str(saved), "--json"]) == 1
    d = json.loads(capsys.readouterr().out)
    assert d["schedule"] == finding["schedule"]
    assert [r["kind"] for r in d["reports"]] == [finding["kind"]]
