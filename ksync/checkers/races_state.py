"""Shadow state of the race detector: vector-clock helpers, objects, cells.

Counterpart: ThreadSanitizer's shadow memory and sync objects
(``tsan_sync.h``), here as plain Python objects keyed by ``id``.  Not
thread-safe by itself: the detector mutates it under its own lock.
"""

from __future__ import annotations

from typing import Any

from . import _stacks

SYNC, IGNORE, RCU = 0, 1, 2


def join(a: list[int], b: list[int]) -> None:
    """a := a ⊔ b (pointwise max), growing ``a`` as needed."""
    lb = len(b)
    if len(a) < lb:
        a.extend([0] * (lb - len(a)))
    # A plain loop: clocks are short (one lane per thread), and for those it
    # is ~3x faster than rebuilding the slice with map(max, ...).
    for i, x in enumerate(b):
        if x > a[i]:
            a[i] = x


def forget(dead: list[int], key: int) -> Any:
    """A weakref callback that queues ``key`` for removal (no lock: it may run anywhere)."""
    return lambda _ref: dead.append(key)


class ShadowObj:
    """Shadow of one object: its memory cells and, if it synchronises, its clocks."""

    __slots__ = ("strong", "ref", "name", "cells", "kind", "vc", "rvc", "writer",
                 "readers")

    def __init__(self, obj: Any, ref: Any, name: str) -> None:
        self.strong = obj if ref is None else None
        self.ref = ref
        self.name = name
        self.cells: dict[Any, Cell] = {}
        self.kind = SYNC
        self.vc: list[int] = []       # release clock (writers, atomics, completions)
        self.rvc: list[int] = []      # rwlock: readers' release clock
        self.writer = -1              # write holder as the events tell it (tid)
        self.readers: dict[int, int] = {}   # read holders as the events tell it: tid -> depth


class Cell:
    """FastTrack state of one location: last write epoch and per-thread reads."""

    __slots__ = ("name", "what", "w_tid", "w_clk", "w_stack", "w_held", "w_atomic", "reads",
                 "sync", "w_ep")

    def __init__(self, name: str, what: str) -> None:
        self.name = name
        self.what = what
        self.w_tid = -1
        self.w_clk = 0
        self.w_stack: _stacks.Stack = _stacks.EMPTY
        self.w_held: tuple = ()
        self.w_atomic = False
        self.reads: dict[int, tuple[int, _stacks.Stack, tuple, bool]] = {}
        self.sync: list[int] | None = None
        # (tid, clock) of the last plain write, one object so a reader
        # without the lock never sees half an update.
        self.w_ep: tuple[int, int] | None = None
