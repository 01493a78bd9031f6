"""The strategy interface, the random walk, replay, and the schedule string.

A strategy is asked, at every scheduling point where more than one managed
thread could run, which one runs next.  Only those decisions are recorded:
given the same program they occur in the same order, so the list of chosen
thread ids replays the run exactly.

The schedule string is that list run-length encoded: thread ids (in spawn
order, ``0`` is the thread that entered the runtime) separated by dots, with
``xN`` for N consecutive decisions of the same thread: ``0x12.1.0x3``.

Every strategy module (``ksync.pct``, ``ksync.preempt``, ``ksync.portfolio``)
builds on this one, and ``ksync.strategy`` (which turns a spec string into a
strategy) imports them all: imports run one way, from the factory down to
this base.  Kernel counterpart: none (the scheduler-side hook of a
controlled scheduler, as in CHESS or Coyote).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from .errors import KsyncError, ReplayDivergence


class Strategy:
    """Picks the next thread to run.  Subclass and override ``choose``.

    ``runnable`` is sorted by thread id; ``current`` is the thread at the
    scheduling point (it may not be runnable any more); ``step`` counts
    decisions so far.
    """

    name = "strategy"

    def choose(self, runnable: Sequence[Any], current: Any, step: int) -> Any:
        raise NotImplementedError

    def finish(self, decisions: int) -> None:
        """Called when the run ends after ``decisions`` decisions (replay checks its length)."""


class RandomStrategy(Strategy):
    """Seeded random walk: each decision picks uniformly among runnable threads."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)
        # What randrange(n) calls for n > 0, without its argument checks: the
        # same draws, so a seed keeps its schedule.
        self._below = self._rng._randbelow

    def choose(self, runnable: Sequence[Any], current: Any, step: int) -> Any:
        return runnable[self._below(len(runnable))]


class ReplayStrategy(Strategy):
    """Follows a recorded schedule string decision by decision."""

    name = "replay"

    def __init__(self, schedule: str) -> None:
        self.decisions = decode_schedule(schedule)

    def choose(self, runnable: Sequence[Any], current: Any, step: int) -> Any:
        if step >= len(self.decisions):
            raise ReplayDivergence(step, f"the schedule has only {len(self.decisions)} "
                                   "decisions but the program asks for more")
        want = self.decisions[step]
        for t in runnable:
            if t.tid == want:
                return t
        names = ", ".join(f"{t.tid}={t.name}" for t in runnable)
        raise ReplayDivergence(step, f"thread {want} is not runnable here (runnable: {names})")

    def finish(self, decisions: int) -> None:
        if decisions < len(self.decisions):
            raise ReplayDivergence(decisions, f"the program ended after {decisions} decisions "
                                   f"but the schedule has {len(self.decisions)}")


def encode_schedule(decisions: Sequence[int]) -> str:
    """The schedule string of ``decisions`` (run-length encoded; every run makes one)."""
    if not decisions:
        return ""
    out: list[str] = []
    add = out.append
    prev, n = decisions[0], 0
    # One pass with a counter: twice as fast as itertools.groupby here.
    for tid in decisions:
        if tid == prev:
            n += 1
        else:
            add(str(prev) if n == 1 else f"{prev}x{n}")
            prev, n = tid, 1
    add(str(prev) if n == 1 else f"{prev}x{n}")
    return ".".join(out)


def decode_schedule(text: str) -> list[int]:
    """Parse a schedule string; a malformed one is a KsyncError naming the token."""
    text = text.strip()
    if not text:
        return []
    out: list[int] = []
    for pos, tok in enumerate(text.split(".")):
        tid, x, count = tok.partition("x")
        if not tid.isdigit() or (x and not count.isdigit()) or count == "0":
            raise KsyncError(f"unreadable schedule string: token {pos} {tok!r} "
                             "is not <thread>[x<count>]")
        out.extend([int(tid)] * (int(count) if count else 1))
    return out


def spec_options(spec: str, keys: dict[str, str]) -> dict[str, int]:
    """The ``name:key=N,...`` options of a strategy spec, as keyword arguments.

    ``keys`` maps each short key to its keyword (``{"d": "depth"}``); a key
    not in it, or a value that is not a number, is a KsyncError naming both.
    """
    _, _, opts = spec.partition(":")
    out: dict[str, int] = {}
    for item in filter(None, opts.split(",")):
        key, eq, val = item.partition("=")
        if not eq or key not in keys or not val.isdigit():
            wanted = " or ".join(f"{k}=<{v}>" for k, v in keys.items())
            raise KsyncError(f"strategy {spec!r}: option {item!r} is not {wanted}")
        out[keys[key]] = int(val)
    return out
