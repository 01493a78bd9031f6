"""--trace and --timeline on tdpmmu run, replay and stall; an explanation under each report."""

from __future__ import annotations

import pytest

from tdpmmu.cli import main
from tdpmmu.cli.common import render_report
from tdpmmu.harness import run_scenario

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMALL = ["--param", "vcpus=2", "--param", "pages=8", "--param", "reloads=1"]

SCRIPT = """
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
"""


@pytest.fixture
def script(tmp_path):
    p = tmp_path / "abba.py"
    p.write_text(SCRIPT)
    return p


def header_threads(out: str) -> list[str]:
    header = next(ln for ln in out.splitlines() if ln.startswith(" step |"))
    return [c.strip() for c in header.split("|")[1:]]


@pytest.mark.timeout(60)
def test_run_trace_prints_one_column_per_thread(script, capsys):
    assert main(["run", str(script), "--seed", "3", "--trace"]) == 1
    out = capsys.readouterr().out
    assert header_threads(out)[:3] == ["main", "t1", "t2"]
    assert "+A(W)" in out and "+B(W)" in out
    assert "!! circular-locking-dependency" in out


@pytest.mark.timeout(120)
def test_run_timeline_draws_the_run_and_a_bad_path_is_refused(script, tmp_path, capsys):
    png = tmp_path / "abba.png"
    assert main(["run", str(script), "--seed", "3", "--timeline", str(png)]) == 1
    assert png.read_bytes().startswith(PNG_MAGIC)
    assert f"timeline written to {png}" in capsys.readouterr().out
    assert main(["run", str(script), "--timeline", str(tmp_path / "x.gif")]) == 2
    assert "must end in .png" in capsys.readouterr().err


@pytest.mark.timeout(60)
def test_run_json_keeps_stdout_one_document_and_traces_to_stderr(script, capsys):
    import json
    assert main(["run", str(script), "--seed", "3", "--trace", "--json"]) == 1
    cap = capsys.readouterr()
    assert json.loads(cap.out)["reports"]
    assert "+A(W)" in cap.err


@pytest.mark.timeout(120)
def test_replay_trace_and_timeline_show_the_replayed_run(tmp_path, capsys):
    params = {"vcpus": 2, "pages": 8, "reloads": 1}
    r = run_scenario("root_reload_storm", seed=2, params=params)
    png = tmp_path / "replay.png"
    main(["replay", "--scenario", "root_reload_storm", *SMALL, "--seed", "2",
          "--schedule", r.schedule, "--trace", "--timeline", str(png)])
    out = capsys.readouterr().out
    assert header_threads(out)[:3] == ["main", "vcpu-0", "vcpu-1"]
    assert "+mmu_lock(W)" in out and f"schedule: {r.schedule}" in out
    assert png.read_bytes().startswith(PNG_MAGIC)


@pytest.mark.timeout(120)
def test_stall_trace_adds_a_small_controlled_run_per_generation(tmp_path, capsys):
    code = main(["stall", "--memory", "4M", "--zap", "sync,async", "--no-plot",
                 "--out", str(tmp_path), "--trace"])
    assert code == 0
    out = capsys.readouterr().out
    assert "stall, traced: zap=sync" in out and "stall, traced: zap=async" in out
    assert "queue [root#1 zap]" in out.split("stall, traced: zap=async", 1)[1]


def test_each_rendered_report_ends_with_its_explanation():
    text = render_report({"kind": "deadlock", "title": "t", "text": "body"})
    assert text.splitlines()[-1].strip().startswith("explain: every live thread was waiting")
    assert render_report({"kind": "error", "title": "t", "text": ""}) == "error: t"
