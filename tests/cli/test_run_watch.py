"""``tdpmmu run SCRIPT.py`` sees a user's plain objects: use-after-free and races."""

from __future__ import annotations

import textwrap

import pytest

from tdpmmu.cli import main

from .util import exit_code

UAF = textwrap.dedent("""
    import ksync
    rt = ksync.current_runtime()

    class Vm:
        def __init__(self):
            self.level = 4

    vm = ksync.track(Vm(), "struct vm")
    def destroy():
        ksync.kfree(vm)
    def reader():
        return vm.level
    rt.join(rt.spawn(destroy, name="destroyer"))
    rt.join(rt.spawn(reader, name="reader"))
""")

RACE = textwrap.dedent("""
    import sys
    import ksync
    rt = ksync.current_runtime()

    class Stats:
        count = 0

    stats = ksync.shared(Stats(), "stats")
    lock = ksync.Mutex("stats_lock")
    locked = sys.argv[1] == "locked"
    def worker():
        if locked:
            with lock:
                stats.count += 1
        else:
            stats.count += 1
    ts = [rt.spawn(worker, name=f"w{i}") for i in range(2)]
    for t in ts:
        rt.join(t)
""")


@pytest.fixture
def script(tmp_path):
    def write(text: str) -> str:
        p = tmp_path / "s.py"
        p.write_text(text)
        return str(p)
    return write


@pytest.mark.parametrize("mode", ["free", "controlled"])
def test_run_reports_a_read_of_a_freed_plain_object(script, capsys, mode):
    argv = ["run", script(UAF)] + (["--mode", "free"] if mode == "free" else [])
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "use-after-free: use-after-free in reader: read of size 8 at struct vm.level" in out
    assert "freed by destroyer" in out


@pytest.mark.parametrize("seed", range(5))
def test_run_reports_an_unlocked_update_of_a_shared_object_and_not_a_locked_one(
        script, capsys, seed):
    path = script(RACE)
    assert main(["run", path, "--seed", str(seed), "--", "unlocked"]) == 1
    assert "data-race" in capsys.readouterr().out
    assert main(["run", "--seed", str(seed), path, "--", "locked"]) == 0


def test_double_dash_is_refused_by_a_command_that_runs_no_script(capsys):
    assert exit_code(["bugs", "--", "x"]) == 2
    assert "takes none" in capsys.readouterr().err
