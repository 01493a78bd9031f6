"""Shared test helpers for ksync: run a body under a runtime in either mode."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ksync

MODES = ("free", "controlled")
SEEDS = range(8)


def run(body: Callable[[ksync.Runtime], Any], mode: str = "controlled", seed: int = 0,
        **kw: Any) -> tuple[ksync.Runtime, Any]:
    """Enter a runtime, call ``body(rt)`` on its main thread, return (rt, result)."""
    kw.setdefault("checks", ())
    result = None
    with ksync.Runtime(mode=mode, seed=seed, **kw) as rt:
        result = body(rt)
    return rt, result


def kinds(rt: ksync.Runtime) -> list[str]:
    return [r.kind for r in rt.reports]


class Recorder(ksync.Checker):
    """A trivial checker: proves the spine delivers every event it should."""

    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def on_event(self, t: Any, kind: str, obj: Any, arg: Any) -> None:
        self.seen.append((t.name, kind, ksync.events.obj_name(obj)))
