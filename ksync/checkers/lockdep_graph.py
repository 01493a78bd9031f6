"""The lock dependency graph and its strong-path search.

Kernel counterpart: the ``locks_after`` lists of each ``struct lock_class``,
the four dependency kinds of ``lock_list::dep`` and ``__bfs()`` with
``check_noncircular()`` (kernel/locking/lockdep.c; the reasoning is in
Documentation/locking/lockdep-design.rst, "Recursive read locks").

A dependency ``A -> B`` records that some thread, holding ``A``, went to
acquire ``B``.  Its kind has two letters: the first says how ``A`` was held
(E: exclusively; S: shared, any reader), the second how ``B`` was being
taken (R: recursive reader, which only a writer holding ``B`` can block; N:
anything a waiting writer also blocks — writers and non-recursive readers).
A closed path can deadlock exactly when it is *strong*: no two consecutive
dependencies ``-(*R)-> L -(S*)->``, because a recursive reader of ``L`` is
never blocked by a task that merely holds ``L`` shared.

Nodes are class keys (strings); the graph keeps, for each dependency kind
of each pair, the first time it was seen (thread and stack), which is what a
report prints.  Not thread-safe: the lockdep checker serialises additions.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

from . import _stacks

EN, ER, SN, SR = 1, 2, 4, 8
KIND_NAMES = {EN: "EN", ER: "ER", SN: "SN", SR: "SR"}
_ENDS_N = EN | SN
_ENDS_R = ER | SR
_STARTS_E = EN | ER


def dep_kind(held_mode: str, acquire_mode: str) -> int:
    """The kind bit of ``held -> acquired`` from the two lock modes."""
    if held_mode == "write":
        return ER if acquire_mode == "read-recursive" else EN
    return SR if acquire_mode == "read-recursive" else SN


class Dep:
    """One kind of one dependency, as first seen (lockdep's ``lock_list`` + trace)."""

    __slots__ = ("prev", "next", "kind", "prev_mode", "next_mode", "thread", "tid", "stack")

    def __init__(self, prev: str, next_: str, kind: int, prev_mode: str, next_mode: str,
                 thread: str, tid: int, stack: _stacks.Stack) -> None:
        self.prev = prev
        self.next = next_
        self.kind = kind
        self.prev_mode = prev_mode
        self.next_mode = next_mode
        self.thread = thread
        self.tid = tid
        self.stack = stack

    def to_dict(self) -> dict[str, Any]:
        return {"from": self.prev, "to": self.next, "kind": KIND_NAMES[self.kind],
                "from_mode": self.prev_mode, "to_mode": self.next_mode,
                "thread": self.thread, "tid": self.tid, "stack": _stacks.render(self.stack)}


class DepGraph:
    """Lock classes and their dependencies.

    ``after[a][b]`` is the bit mask of the kinds seen for ``a -> b``;
    ``first[(a, b, kind)]`` the :class:`Dep` that first added that kind.
    Lookups are two dict probes (the acquisition fast path); additions and
    searches happen only for a dependency never seen before.
    """

    def __init__(self) -> None:
        self.after: dict[str, dict[str, int]] = {}
        self.first: dict[tuple[str, str, int], Dep] = {}
        self.classes: dict[str, str] = {}     # class key -> lock kind ("spinlock", ...)

    def note_class(self, key: str, kind: str) -> None:
        if key not in self.classes:
            self.classes[key] = kind

    def has(self, prev: str, next_: str, kind: int) -> bool:
        d = self.after.get(prev)
        return d is not None and bool(d.get(next_, 0) & kind)

    def add(self, dep: Dep) -> None:
        d = self.after.setdefault(dep.prev, {})
        d[dep.next] = d.get(dep.next, 0) | dep.kind
        self.first.setdefault((dep.prev, dep.next, dep.kind), dep)

    def strong_path(self, start: str, target: str, new_kind: int) -> list[Dep] | None:
        """A shortest path ``start -> .. -> target`` closing a strong cycle with
        the dependency ``target -(new_kind)-> start``, or None.

        Breadth-first over states (class, arrived through an ``*R``
        dependency): from a state reached through ``*R`` only ``E*``
        dependencies continue a strong path.  The cycle also has to be strong
        where it closes: reaching ``target`` through ``*R`` only counts when
        the new dependency starts with E.  Each state is visited once, so the
        search is O(classes + dependencies) and exact.
        """
        new_starts_s = not new_kind & _STARTS_E
        first = (start, bool(new_kind & _ENDS_R))
        parent: dict[tuple[str, bool], tuple[tuple[str, bool], int]] = {}
        seen = {first}
        queue = deque([first])
        after = self.after
        while queue:
            state = queue.popleft()
            node, via_r = state
            for nxt, mask in after.get(node, {}).items():
                allowed = mask & _STARTS_E if via_r else mask
                for ends_r, group in ((False, allowed & _ENDS_N), (True, allowed & _ENDS_R)):
                    if not group:
                        continue
                    kind = group & -group      # prefer the E* variant for the report
                    if nxt == target:
                        if ends_r and new_starts_s:
                            continue
                        return self._unwind(parent, state, (target, ends_r), kind, first)
                    st = (nxt, ends_r)
                    if st in seen:
                        continue
                    seen.add(st)
                    parent[st] = (state, kind)
                    queue.append(st)
        return None

    def _unwind(self, parent: dict, last: tuple[str, bool], end: tuple[str, bool],
                kind: int, first: tuple[str, bool]) -> list[Dep]:
        edges = [(last[0], end[0], kind)]
        st = last
        while st != first:
            prev_state, k = parent[st]
            edges.append((prev_state[0], st[0], k))
            st = prev_state
        edges.reverse()
        return [self.first[e] for e in edges]

    # ------------------------------------------------------------------ export
    def to_json_obj(self) -> dict[str, Any]:
        deps = []
        for a, outs in self.after.items():
            for b, mask in outs.items():
                kinds = [KIND_NAMES[k] for k in (EN, ER, SN, SR) if mask & k]
                seen = {KIND_NAMES[k]: self.first[(a, b, k)].to_dict()
                        for k in (EN, ER, SN, SR) if mask & k}
                deps.append({"from": a, "to": b, "kinds": kinds, "first_seen": seen})
        classes = [{"name": k, "kind": v} for k, v in self.classes.items()]
        return {"classes": classes, "dependencies": deps}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_json_obj(), indent=indent)

    def to_dot(self) -> str:
        lines = ["digraph lockdep {", "  rankdir=LR;", "  node [shape=box];"]
        for k, kind in self.classes.items():
            lines.append(f"  {_q(k)} [label={_q(k + chr(10) + kind)}];")
        for a, outs in self.after.items():
            for b, mask in outs.items():
                label = ",".join(KIND_NAMES[k] for k in (EN, ER, SN, SR) if mask & k)
                lines.append(f"  {_q(a)} -> {_q(b)} [label={_q(label)}];")
        lines.append("}")
        return "\n".join(lines) + "\n"


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
