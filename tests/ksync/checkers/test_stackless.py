"""``Runtime(stacks=False)``: the same findings, no stack saved per event.

A campaign's first pass runs this way and replays a finding with stacks on,
so the contract pinned here is "same kinds of report, same schedule", with
report texts that say where a stack was not recorded.
"""

from __future__ import annotations

import pytest

import ksync
from ksync.checkers import _stacks

from .test_lockdep import _abba_sequential as _abba
from .util import get_checker, kinds, of_kind, run, spawn_all


def _racy(rt: ksync.Runtime) -> None:
    cell = ksync.Shared("cell", 0)

    def inc():
        for _ in range(3):
            cell.write(cell.read() + 1)
    spawn_all(rt, inc, inc)


def _uaf(rt: ksync.Runtime) -> None:
    class Obj:
        pass
    o = ksync.track(Obj(), "struct obj")
    ksync.kfree(o)
    ksync.check_access(o, "field", write=True)


@pytest.mark.parametrize("body,kind", [(_abba, "circular-locking-dependency"),
                                       (_racy, "data-race"), (_uaf, "use-after-free")])
@pytest.mark.parametrize("seed", range(8))
def test_the_same_findings_and_schedule_with_and_without_stacks(body, kind, seed):
    with_stacks = run(body, "controlled", seed)
    without = run(body, "controlled", seed, stacks=False)
    assert kind in kinds(with_stacks)
    assert set(kinds(without)) == set(kinds(with_stacks))
    assert without.schedule == with_stacks.schedule


def test_reports_without_stacks_say_the_stack_was_not_recorded():
    rt = run(_racy, "controlled", 0, stacks=False)
    (race, *_) = of_kind(rt, "data-race")
    assert "stack not recorded" in race.text and "replay the schedule" in race.text
    rt = run(_uaf, "controlled", 0, stacks=False)
    (uaf,) = of_kind(rt, "use-after-free")
    assert "stack not recorded" in uaf.text      # the allocation and free stacks
    assert "stack not recorded" not in of_kind(run(_uaf, "controlled", 0), "use-after-free")[0].text


def test_a_race_suppression_still_applies_when_stacks_are_off():
    def body(rt):
        get_checker(rt, "races").suppressions.append("inc")
        _racy(rt)
    rt = run(body, "controlled", 0, ("races",), stacks=False)
    assert rt.reports == []
    assert kinds(run(_racy, "controlled", 0, ("races",), stacks=False)) == ["data-race"]


def test_not_recorded_is_empty_and_renders_as_a_pointer_to_the_replay():
    nr = _stacks.NOT_RECORDED
    assert not nr and len(nr) == 0 and _stacks.render(nr) == []
    assert "not recorded" in _stacks.top(nr)
    assert "replay" in _stacks.indented(nr) and "replay" in _stacks.numbered(nr)
    assert "no frames outside ksync" in _stacks.indented(_stacks.EMPTY)
