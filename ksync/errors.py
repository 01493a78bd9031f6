"""Exceptions raised by ksync.

Model code never sees checker findings as exceptions unless the runtime is
strict (the analogue of ``panic_on_warn``); these are for misuse of the API and
for unwinding threads when a run is aborted.
"""

from __future__ import annotations


class KsyncError(Exception):
    """Misuse of the ksync API (bad argument, no runtime, wrong thread)."""


class NoRuntimeError(KsyncError):
    """A primitive was used on a thread that no ``ksync.Runtime`` manages."""


class ReportError(KsyncError):
    """Raised in strict mode at the call site of the first report."""

    def __init__(self, report: object) -> None:
        super().__init__(getattr(report, "title", str(report)))
        self.report = report


class ThreadFailed(KsyncError):
    """A managed thread ended with an exception; the message names the thread."""

    def __init__(self, thread_name: str, exc: BaseException) -> None:
        super().__init__(f"managed thread {thread_name!r} raised {type(exc).__name__}: {exc}")
        self.thread_name = thread_name
        self.exc = exc


class RunAborted(BaseException):
    """Unwinds a managed thread from its wait point when the run is aborted.

    A ``BaseException`` so that model code's ``except Exception`` does not
    swallow it; ``finally`` blocks still run, so locks get released on the way.
    """


class DeadlockUnwind(RunAborted):
    """The run deadlocked; every thread is unwound from where it waits."""


class ReplayDivergence(KsyncError):
    """A schedule string no longer fits the program it is replayed on."""

    def __init__(self, step: int, message: str) -> None:
        super().__init__(f"replay diverged at decision {step}: {message}")
        self.step = step
