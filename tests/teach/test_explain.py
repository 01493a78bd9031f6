"""ksync.explain and ``tdpmmu explain``: every report kind explained."""

from __future__ import annotations

import json

import pytest

from ksync.explain import EXPLANATIONS, UnknownKind, explain, summary
from ksync.report import KINDS
from tdpmmu.cli import main


@pytest.mark.parametrize("kind", KINDS)
def test_every_report_kind_has_a_meaning_a_kernel_counterpart_and_a_fix(kind):
    text = explain(kind)
    assert text.startswith(f"{kind}: {EXPLANATIONS[kind].summary}")
    for head in ("What it means", "Where the kernel checks this", "How it is fixed"):
        assert head in text
    assert any(w in EXPLANATIONS[kind].kernel for w in ("kernel/", "mm/", "lib/", "include/"))
    assert summary(kind).endswith(f"(more: tdpmmu explain {kind})")


def test_explanations_cover_exactly_the_stable_kinds():
    assert set(EXPLANATIONS) == set(KINDS)


def test_an_unknown_kind_names_the_known_ones():
    with pytest.raises(UnknownKind, match="unknown report kind 'nope'; known: circular"):
        explain("nope")
    assert summary("nope") == ""


def test_tdpmmu_explain_without_kind_lists_every_kind(capsys):
    assert main(["explain"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in out] == list(KINDS)


def test_tdpmmu_explain_kind_prints_the_explanation_and_the_catalogue_bugs(capsys):
    assert main(["explain", "circular-locking-dependency"]) == 0
    out = capsys.readouterr().out
    assert "lockdep" in out and "flush-under-mmu-lock" in out


def test_tdpmmu_explain_unknown_kind_is_one_line_and_exit_2(capsys):
    assert main(["explain", "segfault"]) == 2
    cap = capsys.readouterr()
    assert cap.out == ""
    assert cap.err.count("\n") == 1 and "unknown report kind 'segfault'" in cap.err


def test_tdpmmu_explain_json(capsys):
    assert main(["explain", "--json", "use-after-free"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "use-after-free" and "no-flush-before-free" in doc["bugs"]
    assert main(["explain", "--json"]) == 0
    assert [d["kind"] for d in json.loads(capsys.readouterr().out)] == list(KINDS)
