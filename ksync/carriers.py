"""OS threads that carry managed threads, kept between runs.

Kernel counterpart: the kthread pool behind ``kthread_create`` (kthreadd
forks; here the forks are kept): every managed thread is a real OS thread,
but starting and joining one costs ~150-200 µs, a reference campaign run
starts seven of them, and a campaign makes hundreds of runs per second.  So
an OS thread whose managed thread ended goes back to an idle list and the
next ``spawn`` reuses it.  A carrier holds nothing of the run it served:
``ksync.thread``'s thread-local is cleared by the bootstrap, its name is set
per job, its CPU mask is set to the spawner's (what a new thread would
inherit), and each job runs in a fresh ``contextvars`` context (a new
thread's is empty).  A user's own ``threading.local`` does outlive a job.

Idle carriers exit after ``IDLE_S`` seconds unused; at most ``MAX_IDLE`` are
kept.  After ``fork()`` the child starts with an empty list (its parent's
carriers do not exist there).
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Callable

from . import affinity

#: Seconds an idle carrier waits for a job before its OS thread exits.
IDLE_S = 30.0
#: Idle carriers kept at most; more exit when their job ends.
MAX_IDLE = 64

_lock = threading.Lock()
_idle: list[_Carrier] = []
_PINNABLE = affinity.supported()


class Carried:
    """The handle of one managed thread's body on a carrier (``threading.Thread``'s
    ``ident``/``join``/``is_alive`` subset the runtime uses)."""

    __slots__ = ("ident", "_done")

    def __init__(self) -> None:
        self.ident: int | None = None
        self._done = threading.Lock()
        self._done.acquire()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the body returned; False if ``timeout`` passed first."""
        if self._done.acquire(timeout=-1 if timeout is None else timeout):
            self._done.release()
            return True
        return False

    def is_alive(self) -> bool:
        return self._done.locked()


class _Carrier:
    __slots__ = ("wake", "job", "mask", "thread")

    def __init__(self, mask: set[int] | None) -> None:
        self.wake = threading.Lock()
        self.wake.acquire()
        self.job: tuple[Callable[[], None], str, set[int] | None, Carried] | None = None
        self.mask = mask
        self.thread = threading.Thread(target=self._loop, name="ksync-carrier", daemon=True)

    def _loop(self) -> None:
        me = threading.current_thread()
        while True:
            if not self.wake.acquire(timeout=IDLE_S):
                with _lock:
                    if self.job is None:
                        if self in _idle:
                            _idle.remove(self)
                        return
                self.wake.acquire()     # a job was handed over as the wait timed out
            fn, name, mask, handle = self.job  # type: ignore[misc]
            self.job = None
            if mask is not None and mask != self.mask and _PINNABLE:
                try:
                    os.sched_setaffinity(0, mask)
                    self.mask = mask
                except OSError:
                    pass    # CPUs gone meanwhile: run on the old mask rather than lose the job
            me.name = name
            handle.ident = me.ident
            try:
                # Context variables (the decimal context among them) start empty, as on a new thread.
                contextvars.Context().run(fn)
            finally:
                me.name = "ksync-carrier"
                handle._done.release()
            del fn, handle      # idle, the last job's closure would keep its whole run alive
            if _PINNABLE:
                # The job may have changed its own mask; compare the next one with the truth.
                self.mask = os.sched_getaffinity(0)
            with _lock:
                if len(_idle) >= MAX_IDLE:
                    return
                _idle.append(self)


def start(fn: Callable[[], None], name: str) -> Carried:
    """Run ``fn()`` on an idle carrier, or on a new one; return its handle.

    ``fn`` must not raise (the runtime's bootstrap catches everything).
    """
    mask = os.sched_getaffinity(0) if _PINNABLE else None
    handle = Carried()
    job = (fn, name, mask, handle)
    with _lock:
        # The job is set under the lock that idling-out takes, so a carrier
        # popped here cannot see "no job" and exit.
        c = _idle.pop() if _idle else None
        if c is not None:
            c.job = job
    if c is None:
        c = _Carrier(mask)
        c.job = job
        c.wake.release()
        c.thread.start()
    else:
        c.wake.release()
    return handle


def idle_count() -> int:
    """Carriers waiting for a job now (for tests and diagnostics)."""
    with _lock:
        return len(_idle)


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    _idle.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
