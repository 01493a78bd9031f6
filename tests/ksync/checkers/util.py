"""Helpers for the checker tests: run a body in either mode, pick reports."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import ksync
from ksync.checkers import get_checker

MODES = ("free", "controlled")
SEEDS = range(20)          # controlled-mode seeds per test
FREE_REPEATS = range(3)    # free-mode repetitions (real interleavings vary)


def cases() -> list[tuple[str, int]]:
    """(mode, seed) pairs: every controlled seed, a few free-mode runs."""
    return [("controlled", s) for s in SEEDS] + [("free", s) for s in FREE_REPEATS]


def run(body: Callable[[ksync.Runtime], Any], mode: str = "controlled", seed: int = 0,
        checks: Iterable[str] | None = None, **kw: Any) -> ksync.Runtime:
    """Enter a runtime with ``checks`` (all by default), run ``body(rt)`` on main."""
    with ksync.Runtime(mode=mode, seed=seed, checks=checks, **kw) as rt:
        body(rt)
    return rt


def kinds(rt: ksync.Runtime) -> list[str]:
    return [r.kind for r in rt.reports]


def of_kind(rt: ksync.Runtime, kind: str) -> list[ksync.Report]:
    return [r for r in rt.reports if r.kind == kind]


def spawn_all(rt: ksync.Runtime, *fns: Callable[[], Any]) -> None:
    """Start one thread per function (named t0, t1, ...) and join them all."""
    ts = [rt.spawn(fn, name=f"t{i}") for i, fn in enumerate(fns)]
    for t in ts:
        t.join()


__all__ = ["MODES", "SEEDS", "cases", "get_checker", "kinds", "of_kind", "run", "spawn_all"]
