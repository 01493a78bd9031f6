"""The labs: each runs with one command and a seed and prints what its handbook says."""

from __future__ import annotations

import pytest

from tdpmmu.cli import main
from tdpmmu.teach.labs import LABS, LabError, get_lab, line_pattern, missing_lines

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def outputs():
    """Each lab's printed output for seed 1, through the command line (made once)."""
    return {}


def run_lab(capsys, outputs, n: int, *extra: str) -> str:
    key = (n, extra)
    if key not in outputs:
        assert main(["lab", str(n), "--seed", "1", *extra]) == 0
        outputs[key] = capsys.readouterr().out
    return outputs[key]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("n", sorted(LABS))
def test_each_lab_prints_what_its_handbook_says(n, capsys, outputs):
    lab = get_lab(n)
    out = run_lab(capsys, outputs, n)
    assert missing_lines(lab.expected_output(), out) == []
    assert lab.section("Questions") in out
    assert "## Answer key" not in out


@pytest.mark.timeout(120)
def test_answers_adds_the_answer_key_of_the_handbook(capsys, outputs):
    out = run_lab(capsys, outputs, 3, "--answers")
    assert "## Answer key" in out and get_lab(3).section("Answer key") in out


def test_every_handbook_has_questions_answers_and_a_run_command():
    for lab in LABS.values():
        text = lab.path.read_text(encoding="utf-8")
        assert f"tdpmmu lab {lab.number} --seed" in text
        questions = lab.section("Questions")
        answers = lab.section("Answer key")
        n_q = sum(1 for ln in questions.splitlines() if ln[:2].rstrip(".").isdigit())
        n_a = sum(1 for ln in answers.splitlines() if ln[:2].rstrip(".").isdigit())
        assert n_q >= 4 and n_q == n_a, lab.handbook


def test_the_matcher_holds_output_to_the_handbook_and_rejects_a_changed_line():
    expected = ["pages  zap  zapped", "   64  sync   64  vcpu-0 64", "<...>| queue [root#1 zap] <...>"]
    good = "Lab 1\npages  zap       zapped\n   64  sync     64  vcpu-0 64\n" \
           "  12 |      | queue [root#1 zap]   |\n"
    assert missing_lines(expected, good) == []
    assert missing_lines(expected, good.replace("vcpu-0 64", "kworker/u0:1 64")) == \
        ["   64  sync   64  vcpu-0 64"]
    # Order matters: a line found only before the previous match does not count.
    assert missing_lines(expected[::-1], good) != []
    assert line_pattern("seed <S>)").fullmatch("seed 17)")


@pytest.mark.timeout(120)
def test_timeline_and_trace_options_draw_and_print_the_main_run(capsys, tmp_path):
    png = tmp_path / "lab3.png"
    assert main(["lab", "3", "--seed", "2", "--trace", "--timeline", str(png)]) == 0
    out = capsys.readouterr().out
    assert "## Trace (lab 3: part B (flush-under-mmu-lock))" in out
    assert f"written to {png}" in out
    assert png.read_bytes().startswith(PNG_MAGIC)


def test_lab_without_number_lists_the_labs(capsys):
    assert main(["lab"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in out] == [str(n) for n in sorted(LABS)]


def test_unknown_lab_and_bad_options_are_usage_errors(capsys):
    assert main(["lab", "9"]) == 2
    assert "no lab 9; labs: 1 (why the worker exists" in capsys.readouterr().err
    assert main(["lab", "1", "--timeline", "x.svg"]) == 2
    assert "must end in .png" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["lab", "1", "--seed", "-3"])
    with pytest.raises(LabError):
        get_lab(0)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("n, seed", [(2, 2), (2, 3), (3, 2)])
def test_what_the_handbook_shows_holds_for_other_seeds_too(n, seed):
    lab = get_lab(n)
    out = lab.run(seed)
    assert missing_lines(lab.expected_output(), out.text) == []
    assert f"(seed {seed})" in out.text.splitlines()[0]


@pytest.mark.timeout(120)
def test_lab4_says_so_when_no_seed_of_its_range_catches_the_bug(monkeypatch):
    from tdpmmu.teach import labs
    monkeypatch.setattr(labs, "SWEEP", 1)
    out = labs.run_lab4(2)           # seed 2 alone: the kworker runs before the free
    assert "No seed in 2..2 caught the bug; try another --seed." in out.text
    assert out.traced.seed == 2 and out.traced.bugs == ("no-flush-before-free",)
