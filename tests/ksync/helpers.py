"""Shared test helpers for ksync: run a body under a runtime in either mode."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

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


def wait_for_child(pid: int, timeout_s: float) -> int:
    """The exit code of forked child ``pid``; a child still alive after ``timeout_s``
    is killed and the test fails (a hang is never waited out)."""
    deadline = time.monotonic() + timeout_s
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("forked child hung")
        time.sleep(0.005)
