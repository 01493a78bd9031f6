"""The labs of docs/labs/: what each runs, what it prints, and its handbook.

A lab is a function of the seed that runs one or more traced programs
(``tdpmmu.teach.lab_programs``) and returns the text it prints, plus the run
that ``--trace`` and ``--timeline`` show.  The handbook
``docs/labs/labN-*.md`` is the single source of the questions and the answer
key; its "What it prints" block is the shape of the output, with ``<...>``
standing for values that depend on the seed (the tests hold every lab to it).

Kernel counterpart: none; these are the exercises of a course on kernel
concurrency, built on the model of arch/x86/kvm/mmu/tdp_mmu.c.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ksync import events as ev
from ksync.explain import summary

from ..harness import RunResult
from ..kvm import ZAP_MODES
from .lab_programs import (
    drop_root_then_destroy,
    run_program,
    shared_root_then_memslot_delete,
    unload_populated_root,
)
from .probes import split_value
from .record import Trace
from .trace import render_trace, summarise

HANDBOOK_DIR = Path(__file__).resolve().parents[2] / "docs" / "labs"
DEFAULT_SEED = 1


class LabError(ValueError):
    """An unknown lab number, or a handbook that is missing or malformed."""


@dataclass
class LabOutput:
    """What a lab printed, and the run its ``--trace``/``--timeline`` show."""

    text: str
    traced: RunResult
    caption: str
    window: tuple[int, int] | None = None     # the steps the timeline zooms on


@dataclass(frozen=True)
class Lab:
    number: int
    title: str
    handbook: str
    run: Callable[[int], LabOutput]

    @property
    def path(self) -> Path:
        return HANDBOOK_DIR / self.handbook

    def section(self, heading: str) -> str:
        """The text under ``## heading`` in the handbook, up to the next ``## ``."""
        if not self.path.exists():
            raise LabError(f"lab {self.number}: handbook {self.path} not found (the labs "
                           "read their questions from docs/labs/ of a source checkout)")
        text = self.path.read_text(encoding="utf-8")
        m = re.search(rf"^## {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
        if m is None:
            raise LabError(f"lab {self.number}: handbook {self.path.name} has no "
                           f"'## {heading}' section")
        return m.group(1).strip("\n")

    def expected_output(self) -> list[str]:
        """The lines of the handbook's "What it prints" block (``<...>`` = any value)."""
        m = re.search(r"```text\n(.*?)```", self.section("What it prints"), re.S)
        if m is None:
            raise LabError(f"lab {self.number}: 'What it prints' has no ```text block")
        return [ln for ln in m.group(1).splitlines() if ln.strip()]


def line_pattern(line: str) -> re.Pattern[str]:
    """A handbook line as a regex: ``<...>`` matches anything, spaces match any run of them."""
    parts = re.split(r"(<[^<>]*>)", line.strip())
    rx = []
    for p in parts:
        if p.startswith("<") and p.endswith(">"):
            rx.append(".*?")
        else:
            rx.append(r"\s*".join(re.escape(w) for w in re.split(r"\s+", p)))
    return re.compile(r"\s*" + "".join(rx) + r"\s*")


def missing_lines(expected: list[str], output: str) -> list[str]:
    """The expected lines that ``output`` does not show, in order (empty when it matches)."""
    lines = [ln.rstrip() for ln in output.splitlines()]
    i = 0
    missing = []
    for want in expected:
        pat = line_pattern(want)
        j = i
        while j < len(lines) and not pat.fullmatch(lines[j]):
            j += 1
        if j == len(lines):
            missing.append(want)
        else:
            i = j + 1
    return missing


def _wrap(text: str) -> list[str]:
    return textwrap.wrap(" ".join(text.split()), 78)


def zapped_by_thread(result: RunResult, first: int = 0, last: int | None = None,
                     thread: str | None = None) -> dict[str, int]:
    """SPTEs zapped per thread within steps [first, last], from the VM's state probe."""
    out: dict[str, int] = {}
    before = 0
    for step, th, kind, obj, arg in result.trace or ():
        if kind != ev.STATE or not obj.endswith(".zapped_sptes"):
            continue
        value, th = split_value(arg, th)
        delta, before = value - before, value
        if first <= step <= (last if last is not None else step) and thread in (None, th):
            out[th] = out.get(th, 0) + delta
    return out


def _fmt_by(by: dict[str, int]) -> str:
    return ", ".join(f"{t} {n}" for t, n in by.items() if n) or "-"


def _report_lines(result: RunResult) -> list[str]:
    out = []
    for i, r in enumerate(result.reports, 1):
        out.append(f"  {i}. {r.kind}: {r.title}")
        line = summary(r.kind)
        if line:
            out.append(f"     {line}")
    if result.error:
        out.append("  the model crashed: " + result.error.splitlines()[-1])
    return out or ["  none"]


# ---------------------------------------------------------------- lab 1
def run_lab1(seed: int) -> LabOutput:
    out = [f"Lab 1: why the worker exists (seed {seed})", ""]
    out += _wrap("One vCPU writes every page of a memslot with dirty logging on (so every "
                 "mapping is a 4K SPTE), then unloads its MMU, dropping the last reference "
                 "to its root. The same program runs under each generation of the zap.")
    out += ["", f"{'pages':>5}  {'zap':<8}  {'zapped by the vCPU in mmu_unload':>32}  "
                "all zapping, by thread"]
    traced = None
    for pages in (64, 256):
        for zap in ZAP_MODES:
            res = run_program("lab1", unload_populated_root, seed=seed, zap=zap, pages=pages)
            m = res.params["marks"]
            inside = zapped_by_thread(res, m["unload_start"], m["unload_end"], m["vcpu"])
            out.append(f"{pages:>5}  {zap:<8}  {sum(inside.values()):>32}  "
                       f"{_fmt_by(zapped_by_thread(res))}")
            if pages == 64 and zap == "async":
                traced = res
    assert traced is not None
    m = traced.params["marks"]
    out += ["", "The async run (64 pages) from the vCPU's mmu_unload to the end:"]
    out.append(render_trace(Trace.from_result(traced), legend=False,
                            window=(m["unload_start"], traced.steps)))
    return LabOutput("\n".join(out), traced, "lab 1: async, 64 pages, from the vCPU's unload",
                     window=(max(0, m["unload_start"] - 10), traced.steps))


# ---------------------------------------------------------------- lab 2
def root_life(result: RunResult, root: str = "root#1") -> list[str]:
    """Every row of the trace that concerns ``root``: its references, flag, zap and free."""
    pat = re.compile(rf"\b{re.escape(root)}\b(?! zap\])")
    rows = [r for r in summarise(Trace.from_result(result))
            if pat.search(r.text) or f"[{root} zap]" in r.text]
    return [f"{r.step:>6}  {r.thread:<14} {r.text}" for r in rows]


def _life_summary(lines: list[str]) -> str:
    parts = {"new": [], "get": [], "invalid": [], "put": [], "free": []}
    last_put = ""
    for ln in lines:
        _, th, text = ln.split(None, 2)
        if text.startswith("new "):
            parts["new"].append(th)
        elif text.endswith(" get"):
            parts["get"].append(th)
        elif text.endswith(" invalid"):
            parts["invalid"].append(th)
        elif text.endswith(" put"):
            parts["put"].append(th)
            if "->0 " in text:
                last_put = th
        elif text.startswith("free "):
            parts["free"].append(th)
    return (f"allocated by {', '.join(parts['new'])}; references taken by "
            f"{', '.join(parts['get']) or 'nobody'}; marked invalid by "
            f"{', '.join(parts['invalid']) or 'nobody'}; count reached 0 in {last_put or '-'}; "
            f"freed by {', '.join(parts['free']) or '-'}")


def run_lab2(seed: int) -> LabOutput:
    out = [f"Lab 2: refcounts and the invalid flag (seed {seed})", ""]
    out += _wrap("Two vCPUs fault on one memslot and so share one root. While they pause, "
                 "the main thread deletes the memslot (kvm_mmu_zap_all_fast); then the "
                 "vCPUs fault again, on a new root, and the VM is destroyed.")
    traced = None
    for part, zap in (("A", "async"), ("B", "sync")):
        res = run_program("lab2", shared_root_then_memslot_delete, seed=seed, zap=zap,
                          pages=16, vcpus=2)
        life = root_life(res)
        out += ["", f"Part {part}: zap={zap}, the life of root#1", "  step  thread         event"]
        out += life
        out.append("summary: " + _life_summary(life))
        out.append("reports: " + (", ".join(r.kind for r in res.reports) or "none"))
        traced = traced or res
    assert traced is not None
    return LabOutput("\n".join(out), traced, "lab 2: part A (async)")


# ---------------------------------------------------------------- lab 3
def run_lab3(seed: int) -> LabOutput:
    out = [f"Lab 3: lock ordering and flushing (seed {seed})", ""]
    out += _wrap("Two vCPUs share a root; the main thread deletes the memslot. "
                 "kvm_mmu_zap_all_fast invalidates the root under mmu_lock for write and "
                 "queues its zap; the zap worker needs mmu_lock for read. Part A flushes the "
                 "queue after dropping mmu_lock (the kernel's order); part B switches on "
                 "the catalogue bug flush-under-mmu-lock.")
    good = run_program("lab3", shared_root_then_memslot_delete, seed=seed, pages=16, vcpus=2)
    bad = run_program("lab3", shared_root_then_memslot_delete, seed=seed, pages=16, vcpus=2,
                      bugs=("flush-under-mmu-lock",))
    out += ["", "Part A: flush after write_unlock(mmu_lock); reports:"] + _report_lines(good)
    out += ["", "Part B: bug flush-under-mmu-lock; reports:"] + _report_lines(bad)
    circ = [r for r in bad.reports if r.kind == "circular-locking-dependency"]
    if circ:
        out += ["", "The lockdep report of part B:"]
        out += ["  " + ln for ln in circ[0].text.splitlines()]
    start = bad.params["marks"].get("delete_start", 0)
    out += ["", "Part B from the memslot delete on:"]
    out.append(render_trace(Trace.from_result(bad), legend=False, window=(start, bad.steps)))
    return LabOutput("\n".join(out), bad, "lab 3: part B (flush-under-mmu-lock)",
                     window=(max(0, start - 10), bad.steps))


# ---------------------------------------------------------------- lab 4
SWEEP = 10


def run_lab4(seed: int) -> LabOutput:
    out = [f"Lab 4: teardown and use-after-free (seed {seed})", ""]
    out += _wrap("A vCPU maps memory, reloads its MMU (the old root's zap is queued) and "
                 "then drops the VM's last reference, so kvm_destroy_vm() runs on its "
                 "thread at once. Correct teardown flushes the zap queue before freeing "
                 "struct kvm; the catalogue bug no-flush-before-free frees it first. Each "
                 f"line runs seeds {seed}..{seed + SWEEP - 1}.")
    out += ["", f"{'scheduler':<9}  {'bug':<22}  caught  seeds"]
    first: RunResult | None = None
    for strategy in ("random", "priority"):
        for bugs in ((), ("no-flush-before-free",)):
            caught = []
            for s in range(seed, seed + SWEEP):
                res = run_program("lab4", drop_root_then_destroy, seed=s, strategy=strategy,
                                  bugs=bugs, pages=16)
                if res.reports or res.error:
                    caught.append(s)
                    if first is None and bugs:
                        first = res
            name = bugs[0] if bugs else "none"
            seeds = " ".join(map(str, caught)) or "-"
            out.append(f"{strategy:<9}  {name:<22}  {len(caught):>2}/{SWEEP}   {seeds}")
    if first is None:
        out += ["", f"No seed in {seed}..{seed + SWEEP - 1} caught the bug; try another --seed."]
        traced = run_program("lab4", drop_root_then_destroy, seed=seed, strategy="priority",
                             bugs=("no-flush-before-free",), pages=16)
        return LabOutput("\n".join(out), traced, "lab 4: priority, no-flush-before-free")
    out += ["", f"First catch: seed {first.seed}, {first.strategy} scheduler; reports:"]
    out += _report_lines(first)
    start = first.params["marks"].get("teardown_start", 0)
    out += ["", f"Seed {first.seed} from the vCPU's last kvm_put on:"]
    out.append(render_trace(Trace.from_result(first), legend=False, window=(start, first.steps)))
    return LabOutput("\n".join(out), first,
                     f"lab 4: seed {first.seed}, priority, no-flush-before-free, teardown",
                     window=(max(0, start - 10), first.steps))


LABS: dict[int, Lab] = {lab.number: lab for lab in (
    Lab(1, "why the worker exists: sync vs async stall", "lab1-why-the-worker.md", run_lab1),
    Lab(2, "refcounts and the invalid flag: the root state machine",
        "lab2-refcounts-and-invalid.md", run_lab2),
    Lab(3, "lock ordering and flushing: catch a flush under mmu_lock",
        "lab3-lock-ordering-and-flushing.md", run_lab3),
    Lab(4, "teardown and use-after-free: remove the flush before free",
        "lab4-teardown-and-use-after-free.md", run_lab4),
)}


def get_lab(number: int) -> Lab:
    """Lab ``number``; an unknown number lists the labs."""
    lab = LABS.get(number)
    if lab is None:
        raise LabError(f"no lab {number}; labs: "
                       + ", ".join(f"{n} ({lab.title})" for n, lab in LABS.items()))
    return lab


__all__ = ["DEFAULT_SEED", "LABS", "Lab", "LabError", "LabOutput", "get_lab", "line_pattern",
           "missing_lines", "root_life", "zapped_by_thread"]
