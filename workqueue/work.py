"""Work items: a function to run later on a worker.

Kernel counterparts: ``struct work_struct`` with ``INIT_WORK()``, and
``struct delayed_work`` with ``INIT_DELAYED_WORK()`` (include/linux/workqueue.h).

A work is in at most one of these states at a time, plus possibly running:

* idle — neither pending nor running;
* pending on a timer (a DelayedWork armed by ``queue_delayed_work``);
* pending on a queue (``_pwq`` set; it sits in a pool worklist, a queue's
  inactive list, or a worker's scheduled list — ``_where``);
* running on a worker (``_worker`` set).  PENDING is cleared when the run
  starts, so a work may be pending again while it runs: that queueing runs
  once more afterwards, on the same worker.

``_seq`` counts successful queueings; a run covers every queueing up to the
``_seq`` it saw when it started (``_run_seq``).  ``flush_work`` waits until
no queueing made before it began is still pending or running.

Happens-before (for the race detector): ``queue_work`` releases to the work
and a run acquires it when it starts; a run releases to ``done_hb`` when it
ends and the next run, ``flush_work`` and ``cancel_work_sync`` acquire it.

Field rules: "I" = set at creation; every other field is under ``rt.big``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ksync import LockMap

from . import ops
from .state import WorkqueueError

#: One lockdep map per work class name, shared like the kernel's static key per
#: INIT_WORK site (lockdep keys classes by name, so sharing changes no verdict;
#: it only spares a LockMap per Work on the queueing hot path).
_MAPS: dict[str, LockMap] = {}
_MAPS_CAP = 4096


def _work_map(name: str) -> LockMap:
    m = _MAPS.get(name)
    if m is None:
        if len(_MAPS) >= _MAPS_CAP:
            _MAPS.clear()       # names unique per work: stay bounded, lose nothing
        m = _MAPS[name] = LockMap(f"(work_completion){name}")
    return m


class RunsEnded:
    """The happens-before object a work's runs release to when they end.

    Kept apart from the work itself (which ``queue_work`` releases to), so
    a flush acquires only what the runs it waited for did, not the writes
    of someone who queued the work after the flush began.
    """

    __slots__ = ("name", "__weakref__")

    def __init__(self, work_name: str) -> None:
        self.name = f"end of {work_name}"


class Work:
    """A function to run on a worker: ``Work(fn)``, where ``fn(work)`` is called.

    Kernel: ``INIT_WORK(&w, fn)``.  ``fn`` receives the work itself (the
    kernel's ``work_func_t``); put what it needs in ``data`` or in a
    closure.  ``name`` defaults to the function's qualified name and names
    the work's lockdep class ``(work_completion)<name>``: works created with
    the same name share a class, like works initialised at one call site.
    """

    __slots__ = ("func", "name", "data", "lockdep_map", "done_hb",
                 "_pending", "_canceling", "_seq", "_pwq", "_qseq", "_where",
                 "_worker", "_run_seq", "_run_wq", "_run_qseq", "_waiters",
                 "_timer_key", "_timer_wq", "__weakref__")

    def __init__(self, func: Callable[[Any], Any], name: str | None = None,
                 data: Any = None) -> None:
        if not callable(func):
            raise WorkqueueError(f"{type(self).__name__}({func!r}): the work function "
                                 "must be callable as fn(work)")
        self.func = func                                              # I
        self.name = name or getattr(func, "__qualname__", None) or repr(func)  # I
        self.data = data                                              # the user's
        self.lockdep_map = _work_map(self.name)                       # I
        self.done_hb = RunsEnded(self.name)                           # I
        self._pending = False     # PENDING: armed on a timer or queued
        self._canceling = 0       # cancel_*_sync calls in progress: queueing is refused
        self._seq = 0             # successful queueings so far
        self._pwq: Any = None     # the queue it is pending on
        self._qseq = 0            # that queue's sequence number for this queueing
        self._where: Any = None   # the deque holding it while pending on a queue
        self._worker: Any = None  # the Worker running it
        self._run_seq = 0         # the _seq the current run covers
        self._run_wq: Any = None  # the queue the current run came from
        self._run_qseq = 0
        self._waiters: list = []  # flush_work / cancel_work_sync callers
        self._timer_key: Any = None  # DelayedWork: its entry in the timer wheel
        self._timer_wq: Any = None   # DelayedWork: the queue the timer will queue it on

    # Kernel: work_pending() / work_busy().
    @property
    def pending(self) -> bool:
        """True while queued or armed (kernel: work_pending())."""
        return self._pending

    @property
    def running(self) -> bool:
        """True while a worker runs it (kernel: work_busy() & WORK_BUSY_RUNNING)."""
        return self._worker is not None

    def holders(self) -> list[Any]:
        """For deadlock reports: a flush of this work waits for the worker running it."""
        w = self._worker
        return [w.thread] if w is not None and w.thread is not None else []

    # Python-style spellings of the module functions, which live in modules
    # built on this one: they are reached through ops (see ops.py).
    def queue(self, wq: Any = None) -> bool:
        """``queue_work(wq or system_wq, self)``."""
        return ops.queue_work(ops.system_wq if wq is None else wq, self)

    def flush(self) -> bool:
        """``flush_work(self)``."""
        return ops.flush_work(self)

    def cancel(self) -> bool:
        """``cancel_work(self)``: remove a pending queueing, do not wait."""
        return ops.cancel_work(self)

    def cancel_sync(self) -> bool:
        """``cancel_work_sync(self)``."""
        return ops.cancel_work_sync(self)

    def __repr__(self) -> str:
        state = "running" if self._worker is not None else ""
        if self._pending:
            state = (state + "+" if state else "") + "pending"
        return f"<{type(self).__name__} {self.name} {state or 'idle'}>"


class DelayedWork(Work):
    """A work queued after a delay: kernel ``INIT_DELAYED_WORK(&dw, fn)``.

    ``fn(dwork)`` is called on the worker.  A DelayedWork is also a Work, so
    ``queue_work``, ``flush_work`` and ``cancel_work_sync`` accept it, as the
    kernel accepts ``&dwork->work``.
    """

    __slots__ = ()

    @property
    def work(self) -> DelayedWork:
        """Kernel: ``dwork->work`` (the same object here)."""
        return self

    @property
    def timer_pending(self) -> bool:
        """True while armed and not yet queued (kernel: timer_pending(&dwork->timer))."""
        return self._timer_key is not None

    def queue(self, wq: Any = None, delay_ms: float = 0) -> bool:  # type: ignore[override]
        """``queue_delayed_work(wq or system_wq, self, delay_ms)``."""
        return ops.queue_delayed_work(ops.system_wq if wq is None else wq, self, delay_ms)

    def mod(self, wq: Any = None, delay_ms: float = 0) -> bool:
        """``mod_delayed_work(wq or system_wq, self, delay_ms)``."""
        return ops.mod_delayed_work(ops.system_wq if wq is None else wq, self, delay_ms)

    def flush(self) -> bool:
        """``flush_delayed_work(self)``: fire an armed timer now, then wait."""
        return ops.flush_delayed_work(self)

    def cancel(self) -> bool:
        """``cancel_delayed_work(self)``."""
        return ops.cancel_work(self)

    def cancel_sync(self) -> bool:
        """``cancel_delayed_work_sync(self)``."""
        return ops.cancel_work_sync(self)
