"""``tdpmmu fuzz``: default directories per spec, collisions named, the summary, bad values."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tdpmmu.cli import main

from ..campaign.toyscenario import toy_scenarios
from .util import exit_code

TOY = ["fuzz", "--scenario", "toy_lost_update", "--strategy", "random", "--jobs", "1", "-q",
       "--no-minimise"]


@pytest.fixture(autouse=True)
def toys(tmp_path, monkeypatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)         # the default --out is relative to here
    with toy_scenarios():
        yield


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def test_campaigns_that_differ_in_zap_bug_or_seed_get_their_own_directories(capsys):
    # Every field's effect on the name is pinned in tests/campaign/test_spec_naming.py;
    # here, that the command line uses it.
    variants = [[], ["--zap", "sync"], ["--bug", "no-flush-before-free"], ["--seed", "9"]]
    dirs = set()
    for extra in variants:
        assert main([*TOY, "--runs", "1", "--json", *extra]) in (0, 1)
        dirs.add(Path(_json(capsys)["results"]).parent)
    assert len(dirs) == len(variants)
    assert all(d.parent == Path("tdpmmu-fuzz") for d in dirs)
    assert {d.name.split("-")[1] for d in dirs} == {"async", "sync"}


def test_the_same_spec_asks_for_resume_and_resume_extends_it(capsys):
    assert main([*TOY, "--runs", "2", "--json"]) in (0, 1)
    assert exit_code([*TOY, "--runs", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "already holds this campaign (2 runs done; --resume runs the other 1)" in err
    assert len(err.splitlines()) == 1
    assert main([*TOY, "--runs", "3", "--resume", "--json"]) in (0, 1)
    doc = _json(capsys)
    assert doc["runs"] == 3 and doc["complete"]


@pytest.mark.parametrize("resume", [[], ["--resume"]])
def test_another_spec_in_the_same_out_names_the_option_that_differs(tmp_path, capsys, resume):
    out = ["--out", str(tmp_path / "c")]
    assert main([*TOY, "--runs", "2", *out]) in (0, 1)
    capsys.readouterr()
    assert exit_code([*TOY, "--runs", "2", *out, "--zap", "sync", "--seed", "4", *resume]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "holds another campaign (--seed is 4 here, 0 there; --zap is sync here, async " \
           "there)" in err


def test_the_last_line_names_the_summary_beside_the_results(tmp_path, capsys):
    assert main([*TOY, "--runs", "12", "--out", str(tmp_path / "c")]) == 1
    last = capsys.readouterr().out.rstrip().splitlines()[-1]
    html = tmp_path / "c" / "summary.html"
    assert last.startswith(f"summary: {html}")
    assert html.is_file() and "warn: lost update" in html.read_text()
    assert main([*TOY, "--runs", "12", "--out", str(tmp_path / "c"), "--resume",
                 "--json"]) == 1
    assert _json(capsys)["summary"][0] == str(html)


@pytest.mark.parametrize("extra, needle", [
    (["--runs", "0"], "0 is not allowed here; give a count >= 1"),
    (["--runs", "-3"], "-3 is negative"),
    (["--runs", "many"], "'many' is not an integer"),
    (["--jobs", "-1"], "-1 is negative"),
    (["--depth", "0"], "count >= 1"),
    (["--steps", "0"], "count >= 1"),
    (["--seed", "-1"], "negative"),
    (["--time-limit", "0"], "positive, finite number of seconds"),
    (["--time-limit", "nan"], "positive, finite number of seconds"),
    (["--time-limit", "soon"], "'soon' is not a number of seconds"),
    (["--strategy", "bfs"], "invalid choice: 'bfs'"),
    (["--out", "{file}"], "exists and is not a directory"),
    (["--out", "{file}/sub"], "cannot be created"),
])
def test_bad_values_are_one_line_and_exit_two(tmp_path, capsys, extra, needle):
    f = tmp_path / "a-file"
    f.write_text("")
    argv = [*TOY, *(a.format(file=f) for a in extra)]
    assert exit_code(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
