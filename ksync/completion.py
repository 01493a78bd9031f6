"""struct completion: wait until another thread says something is done.

Kernel counterpart: ``complete``, ``complete_all``, ``wait_for_completion``,
``wait_for_completion_timeout``, ``reinit_completion`` (kernel/sched/completion.c).
``done`` counts completions not yet consumed; ``complete_all`` makes it
unbounded so every present and future waiter passes until reinit.
"""

from __future__ import annotations

from . import events as ev
from .errors import KsyncError
from .sleep import might_sleep
from .thread import current_thread

_ALL = 1 << 62


class Completion:
    """``c.complete()`` wakes one waiter, ``c.complete_all()`` all of them."""

    __slots__ = ("name", "done", "_waiters", "__weakref__")

    def __init__(self, name: str = "completion") -> None:
        self.name = name
        self.done = 0
        self._waiters: list = []

    def complete(self) -> None:
        self._complete(all_=False)

    def complete_all(self) -> None:
        self._complete(all_=True)

    def _complete(self, all_: bool) -> None:
        t = current_thread()
        rt = t.rt
        rt.point(t)
        if rt.listeners:
            rt.emit(t, ev.COMPLETE, self, "all" if all_ else "one")
        with rt.big:
            if all_:
                self.done = _ALL
                rt.wake_all(self)
            else:
                if self.done < _ALL:
                    self.done += 1
                rt.wake_one(self)

    def wait(self, timeout_ms: float | None = None) -> bool:
        """Kernel: wait_for_completion[_timeout]() — False if the timeout passed first."""
        if timeout_ms is not None and timeout_ms < 0:
            raise KsyncError(f"{self.name}.wait(timeout_ms={timeout_ms!r}): negative timeout")
        might_sleep()
        t = current_thread()
        rt = t.rt
        deadline = None if timeout_ms is None else rt.now_ns() + int(timeout_ms * 1e6)
        with rt.big:
            while self.done == 0:
                left = None if deadline is None else deadline - rt.now_ns()
                if left is not None and left <= 0:
                    return False
                rt.wait(t, self, f"completion {self.name}", timeout_ns=left)
            if self.done < _ALL:
                self.done -= 1
            # A consumer leaving with completions still pending hands them on.
            if self.done and self._waiters:
                rt.wake_one(self)
        if rt.listeners:
            rt.emit(t, ev.WAIT_DONE, self, None)
        return True

    def try_wait(self) -> bool:
        """Kernel: try_wait_for_completion()."""
        t = current_thread()
        with t.rt.big:
            if self.done == 0:
                return False
            if self.done < _ALL:
                self.done -= 1
        if t.rt.listeners:
            t.rt.emit(t, ev.WAIT_DONE, self, None)
        return True

    def completion_done(self) -> bool:
        return self.done != 0

    def reinit(self) -> None:
        """Kernel: reinit_completion()."""
        t = current_thread()
        with t.rt.big:
            self.done = 0
