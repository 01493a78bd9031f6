"""``tdpmmu run SCRIPT.py``: the script runs under a runtime; reports, JSON, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tdpmmu.cli import main

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
    print("script output")
""")

CLEAN = textwrap.dedent("""
    import sys
    import ksync
    rt = ksync.current_runtime()
    n = ksync.Atomic(0, name="n")
    ts = [rt.spawn(n.inc, name=f"t{i}") for i in range(int(sys.argv[1]))]
    for t in ts:
        rt.join(t)
    assert n.read() == int(sys.argv[1])
""")


@pytest.fixture
def script(tmp_path):
    def write(text: str, name: str = "s.py") -> str:
        p = tmp_path / name
        p.write_text(text)
        return str(p)
    return write


def test_run_prints_reports_and_exits_one(script, capsys):
    assert main(["run", script(ABBA)]) == 1
    out = capsys.readouterr().out
    assert "circular-locking-dependency: possible circular locking dependency" in out
    assert "script output" in out and "schedule: " in out


def test_run_json_shape_keeps_the_script_output_off_stdout(script, capsys):
    assert main(["run", script(ABBA), "--json", "--seed", "3"]) == 1
    cap = capsys.readouterr()
    doc = json.loads(cap.out)
    assert set(doc) >= {"reports", "schedule"}
    assert doc["reports"][0]["kind"] == "circular-locking-dependency"
    assert {"kind", "title", "text"} <= doc["reports"][0].keys()
    assert "script output" in cap.err


def test_run_clean_script_with_arguments_exits_zero(script, capsys):
    assert main(["run", script(CLEAN), "--", "4"]) == 0
    assert "0 report(s)" in capsys.readouterr().out


def test_run_with_schedule_replays_the_same_reports(script, capsys):
    path = script(ABBA)
    main(["run", path, "--json", "--strategy", "pct", "--seed", "5"])
    first = json.loads(capsys.readouterr().out)
    assert main(["run", path, "--json", "--schedule", first["schedule"]]) == 1
    again = json.loads(capsys.readouterr().out)
    assert again["reports"] == first["reports"] and again["schedule"] == first["schedule"]


def test_run_checks_none_silences_the_checkers(script, capsys):
    assert main(["run", script(ABBA), "--checks", "none", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["reports"] == []


def test_run_free_mode_runs_the_script(script, capsys):
    assert main(["run", "--mode", "free", script(CLEAN), "3"]) == 0


def test_script_that_raises_exits_one_with_its_traceback(script, capsys):
    assert main(["run", script("raise RuntimeError('boom')\n")]) == 1
    assert "RuntimeError: boom" in capsys.readouterr().out


@pytest.mark.parametrize("argv, needle", [
    (["run", "/nonexistent/script.py"], "no such script"),
    (["run", "{script}", "--checks", "lockdep,nope"], "unknown checker"),
    (["run", "{script}", "--seed", "-2"], "negative"),
    (["run", "{script}", "--schedule", "0x"], "unreadable schedule"),
    (["run", "{bad}"], "cannot be compiled"),
])
def test_bad_input_is_one_line_and_exit_two(script, capsys, argv, needle):
    paths = {"script": script(CLEAN), "bad": script("def (:\n", "bad.py")}
    assert exit_code([a.format(**paths) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_console_script_runs_as_a_module(script):
    p = subprocess.run([sys.executable, "-m", "tdpmmu", "run", script(ABBA), "--json"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and json.loads(p.stdout)["reports"]


LOST_UPDATE = textwrap.dedent("""
    import ksync
    rt = ksync.current_runtime()
    counter = ksync.Atomic(0, name="counter")
    def inc():
        v = counter.read()
        counter.set(v + 1)
    ts = [rt.spawn(inc, name=f"inc{i}") for i in range(2)]
    for t in ts:
        rt.join(t)
    if counter.read() != 2:
        rt.report("warn", "lost update", "WARNING: lost update")
""")


def test_explore_without_preemptions_is_clean_and_says_it_saw_every_schedule(script, capsys):
    assert main(["run", script(LOST_UPDATE), "--strategy", "explore",
                 "--preemptions", "0"]) == 0
    assert "(all of them); 0 failed" in capsys.readouterr().out


def test_explore_finds_the_lost_update_and_its_schedule_replays(script, capsys):
    path = script(LOST_UPDATE)
    assert main(["run", path, "--strategy", "explore", "--preemptions", "1", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["explored"]["complete"] and doc["explored"]["failures"][0]["preemptions"] == 1
    assert main(["run", path, "--schedule", doc["schedule"], "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["reports"][0]["title"] == "lost update"


def test_explore_refuses_free_mode(script, capsys):
    assert main(["run", "--mode", "free", "--strategy", "explore", script(CLEAN)]) == 2
    assert "explore needs --mode controlled" in capsys.readouterr().err


@pytest.mark.parametrize("value, needle", [("garbage", "expected a CPU number"),
                                           ("4096", "not one this process may use")])
@pytest.mark.parametrize("command", [["run", "{script}"], ["fuzz", "--scenario", "teardown",
                                                          "--runs", "1"]])
def test_a_bad_ksync_pin_is_one_line_and_exit_two(script, capsys, monkeypatch, value, needle,
                                                  command):
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity here")
    monkeypatch.setenv("KSYNC_PIN", value)
    assert exit_code([a.format(script=script(CLEAN)) for a in command]) == 2
    err = capsys.readouterr().err.strip()
    assert "KSYNC_PIN" in err and needle in err and len(err.splitlines()) == 1
