"""tdpmmu.teach.cli_options: the --trace/--timeline glue of run, replay and stall."""

from __future__ import annotations

import argparse

import pytest

import ksync
from tdpmmu.teach.cli_options import (
    TeachOptionError,
    add_teach_options,
    check_teach_options,
    emit_stall_teach_outputs,
    emit_teach_outputs,
    stall_timeline_path,
    wants_trace,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def parse(*argv: str, trace: bool = True) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--json", action="store_true")
    add_teach_options(p, trace=trace)
    return p.parse_args(list(argv))


def test_options_are_added_and_asked_for():
    assert not wants_trace(parse())
    assert wants_trace(parse("--trace"))
    assert wants_trace(parse("--timeline", "t.png"))
    assert not hasattr(parse(trace=False), "trace")


def test_a_timeline_path_that_cannot_be_written_is_refused_before_running(tmp_path):
    check_teach_options(parse("--timeline", str(tmp_path / "ok.png")))
    with pytest.raises(TeachOptionError, match="must end in .png"):
        check_teach_options(parse("--timeline", str(tmp_path / "t.jpg")))
    with pytest.raises(TeachOptionError, match="does not exist"):
        check_teach_options(parse("--timeline", str(tmp_path / "no" / "t.png")))


@pytest.mark.timeout(60)
def test_a_runtime_run_is_traced_to_stdout_and_to_stderr_under_json(capsys):
    with ksync.Runtime(mode="controlled", seed=1, trace=True) as rt:
        lock = ksync.Mutex("demo_lock")

        def worker():
            with lock:
                ksync.msleep(1)

        for t in [rt.spawn(worker, name=f"w{i}") for i in range(2)]:
            rt.join(t)
    emit_teach_outputs(parse("--trace"), rt, title="demo")
    cap = capsys.readouterr()
    assert "trace: demo" in cap.out and "+demo_lock(W)" in cap.out
    assert "waits demo_lock(W)" in cap.out
    emit_teach_outputs(parse("--trace", "--json"), rt)
    cap = capsys.readouterr()
    assert cap.out == "" and "+demo_lock(W)" in cap.err


@pytest.mark.timeout(120)
def test_stall_traces_one_small_controlled_run_per_generation(capsys):
    emit_stall_teach_outputs(parse("--trace"), ["sync", "async"])
    out = capsys.readouterr().out
    sync_part, async_part = out.split("zap=async", 1)
    assert "zapped 64 SPTEs" in sync_part and "queue [root#1 zap]" in async_part
    assert "queue [" not in sync_part


@pytest.mark.timeout(120)
def test_stall_draws_the_timeline_of_its_generation(tmp_path, capsys):
    emit_stall_teach_outputs(parse("--timeline", str(tmp_path / "stall.png")), ["async"])
    assert f"timeline written to {tmp_path / 'stall.png'}" in capsys.readouterr().out
    assert (tmp_path / "stall.png").read_bytes().startswith(PNG_MAGIC)


def test_one_generation_keeps_the_timeline_name():
    assert stall_timeline_path("a/t.png", "sync", ["sync"]) == "a/t.png"
    assert stall_timeline_path("a/t.png", "sync", ["sync", "async"]) == "a/t-sync.png"
