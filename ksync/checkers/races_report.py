"""Race reports in ThreadSanitizer's shape, and race suppressions.

Counterparts: compiler-rt's ``tsan_report.cpp`` (``PrintReport``: both
accesses with their stacks, the mutexes held, the location, how each thread
was created, a SUMMARY line) and TSan's suppression files (``race:<pattern>``).

Suppressions
------------
A race is suppressed when a frame of either access's stack matches a
pattern (``fnmatch``: ``*`` and ``?``) by function name, qualified name
(``Class.method``), file path or file base name.  Patterns come from, in
order:

1. ``ksync.checkers.races.SUPPRESSIONS`` (module-level list; or call
   ``ksync.checkers.add_suppression(pattern)``), read when a run starts;
2. the environment variable ``KSYNC_SUPPRESS``: entries separated by commas,
   semicolons or newlines, each ``pattern`` or TSan-style ``race:pattern``;
   an entry ``@path`` reads a file of such entries, one per line, ``#``
   starting a comment;
3. the checker's own ``suppressions`` list, which a test can extend during a
   run: ``get_checker(rt, "races").suppressions.append("my_func")``.

Suppressed races are counted in the checker's ``suppressed`` attribute.
"""

from __future__ import annotations

import os
import re
from fnmatch import fnmatchcase
from typing import Any

from . import _stacks

#: Patterns every race-detector run starts with (see the module docstring).
SUPPRESSIONS: list[str] = []


def add_suppression(pattern: str) -> None:
    """Suppress races whose stacks have a frame matching ``pattern`` (all later runs)."""
    SUPPRESSIONS.append(_strip(pattern))


def _strip(entry: str) -> str:
    entry = entry.strip()
    return entry[5:].strip() if entry.startswith("race:") else entry


def parse_suppressions(text: str) -> list[str]:
    """Entries of a ``KSYNC_SUPPRESS`` value (``@file`` entries are read)."""
    out: list[str] = []
    for raw in re.split(r"[,;\n]", text):
        entry = raw.split("#", 1)[0].strip()
        if not entry:
            continue
        if entry.startswith("@"):
            with open(entry[1:], encoding="utf-8") as f:
                out.extend(parse_suppressions(f.read()))
        elif entry.startswith("race:") or ":" not in entry:
            out.append(_strip(entry))
    return out


def initial_suppressions() -> list[str]:
    return [*SUPPRESSIONS, *parse_suppressions(os.environ.get("KSYNC_SUPPRESS", ""))]


def suppressed(patterns: list[str], *stacks: _stacks.Stack) -> str | None:
    """The first pattern matching a frame of one of ``stacks``, or None."""
    if not patterns:
        return None
    for st in stacks:
        for name, qual, filename in _stacks.functions(st):
            base = os.path.basename(filename)
            for p in patterns:
                if (fnmatchcase(name, p) or fnmatchcase(qual, p)
                        or fnmatchcase(filename, p) or fnmatchcase(base, p)):
                    return p
    return None


# ---------------------------------------------------------------------- reports
_OPS = {("read", False): "Read", ("write", False): "Write",
        ("read", True): "Atomic read", ("write", True): "Atomic write"}


def op_word(op: str, atomic: bool) -> str:
    return _OPS[(op, atomic)]


def mutexes(held: tuple) -> str:
    if not held:
        return ""
    return " (mutexes: " + ", ".join(f"{m} {_stacks.class_name(lk)}" for lk, m in held) + ")"


def thread_label(rt: Any, tid: int) -> str:
    if tid == 0:
        return "main thread"
    name = rt.threads[tid].name if tid < len(rt.threads) else "?"
    return f"thread T{tid} '{name}'"


def render(rt: Any, location: str, what: str, cur: dict[str, Any], prev: dict[str, Any],
           created: dict[int, tuple[int, _stacks.Stack]]) -> str:
    """``cur``/``prev``: op, atomic, tid, stack (saved), held."""
    lines = ["==================",
             "WARNING: ThreadSanitizer: data race (ksync)"]
    for i, acc in enumerate((cur, prev)):
        word = op_word(acc["op"], acc["atomic"])
        if i:
            word = "Previous " + word[0].lower() + word[1:]
            lines.append("")
        lines.append(f"  {word} of size 8 at {location} by {thread_label(rt, acc['tid'])}"
                     f"{mutexes(acc['held'])}:")
        lines.append(_stacks.numbered(acc["stack"]))
    lines += ["", f"  Location is {what}."]
    for tid in dict.fromkeys((cur["tid"], prev["tid"])):
        if tid == 0:
            continue
        t = rt.threads[tid]
        state = "finished" if t.state == "done" else "running"
        parent, st = created.get(tid, (0, _stacks.EMPTY))
        lines += ["", f"  Thread T{tid} '{t.name}' (tid={tid}, {state}) created by "
                  f"{thread_label(rt, parent)} at:", _stacks.numbered(st)]
    top = _stacks.frames(cur["stack"][:2])
    where = f"{top[0][0]}:{top[0][1]} in {top[0][2]}" if top else "<unknown>"
    lines += ["", f"SUMMARY: ThreadSanitizer: data race {where}", "=================="]
    return "\n".join(lines)


def access_dict(rt: Any, acc: dict[str, Any]) -> dict[str, Any]:
    tid = acc["tid"]
    return {"op": op_word(acc["op"], acc["atomic"]).lower(), "tid": tid,
            "thread": rt.threads[tid].name if tid < len(rt.threads) else "?",
            "stack": _stacks.render(acc["stack"]),
            "mutexes": [[m, _stacks.class_name(lk)] for lk, m in acc["held"]]}
