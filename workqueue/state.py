"""Per-runtime work-queue state: the worker pools, the live queues, the limits.

Kernel counterpart: the file-scope globals of kernel/workqueue.c — the
standard worker pools, the ``workqueues`` list, ``wq_pool_mutex``'s data —
kept once per ``ksync.Runtime`` (a runtime is a machine), found with
``rt.service("workqueue", ...)``.

Field rules: "B" = only under ``rt.big``; "I" = set at creation.
"""

from __future__ import annotations

import os
from typing import Any

from ksync import KsyncError, KThread, current_thread
from ksync.report import call_site

from . import ops
from .pool import WorkerPool, kick_pool_locked, start_worker

#: Worker limit per pool unless ``set_pool_limits`` says otherwise; the same
#: default as ``concurrent.futures.ThreadPoolExecutor``'s ``max_workers``.
DEFAULT_MAX_WORKERS = min(32, (os.cpu_count() or 1) + 4)
#: Kernel: IDLE_WORKER_TIMEOUT (300 s) — how long a surplus idle worker lingers.
IDLE_WORKER_TIMEOUT_MS = 300_000.0

_SKIP = ("ksync", "workqueue")


class WorkqueueError(KsyncError):
    """Misuse of the workqueue API (bad flags, a queue of another runtime, ...)."""


def site() -> str:
    """The caller's ``file:line function`` outside ksync and workqueue."""
    return call_site(_SKIP)


def resolve_wq(wq: Any, rt: Any) -> Any:
    """The runtime's ``Workqueue`` for ``wq`` (a queue, or a system queue handle).

    Here rather than in wq.py so that flush.py, which wq.py builds on, can use it.
    """
    resolve = getattr(wq, "resolve", None)
    if resolve is None:
        raise WorkqueueError(f"{wq!r} is not a work queue: make one with alloc_workqueue() "
                             f"or use system_wq (at {site()})")
    return resolve(rt)


class WqState:
    """Everything the work queues of one runtime share."""

    def __init__(self, rt: Any) -> None:
        self.rt = rt                                            # I
        self.pools: dict[tuple[bool, bool], WorkerPool] = {}    # B: (unbound, highpri) -> pool
        self.workqueues: list[Any] = []                         # B: live (not destroyed) queues
        self.max_workers = DEFAULT_MAX_WORKERS                  # B
        self.idle_timeout_ns = int(IDLE_WORKER_TIMEOUT_MS * 1e6)  # B
        self.worker_of: dict[KThread, Any] = {}                 # B: kthread -> Worker/Rescuer
        self.wheel: Any = None                                  # B: the delayed-work timer wheel
        self.system: dict[str, Any] = {}                        # B: system_wq & co, by name
        rt.at_exit(self._at_exit)

    def pool_locked(self, unbound: bool, highpri: bool) -> WorkerPool:
        """The standard pool for these attributes, made on first use.  Context: rt.big."""
        key = (unbound, highpri)
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = WorkerPool(self, len(self.pools), unbound, highpri)
        return pool

    def _at_exit(self) -> None:
        """Runtime exit: drop armed timers, then let every live queue run dry.

        Armed delayed works are discarded rather than waited for: a periodic
        work that re-arms itself would otherwise keep the run alive forever
        (in free mode, for real seconds).  Works already queued do run, so a
        script that queues and returns sees its works done.
        """
        rt = self.rt
        if rt.aborting:
            return
        # timer.py and flush.py sit above this file: their functions come via ops.
        ops.close_wheel(self)
        with rt.big:
            queues = list(self.workqueues)
        for wq in queues:
            ops.drain_quietly(wq)


def state(rt: Any) -> WqState:
    """The runtime's WqState (created under ``rt.big`` so two first users agree)."""
    st = rt._services.get("workqueue")
    if st is None:
        with rt.big:
            st = rt.service("workqueue", lambda: WqState(rt))
    return st


def set_pool_limits(max_workers: int | None = None, idle_timeout_ms: float | None = None) -> None:
    """Set the calling runtime's worker limit per pool and the idle-out delay.

    Kernel counterpart: none (the kernel makes workers until memory runs
    out, and idles them out after IDLE_WORKER_TIMEOUT).  ``max_workers=0``
    models a machine where no worker can be created at all, so that only
    WQ_MEM_RECLAIM rescuers make progress.
    """
    if max_workers is not None and (not isinstance(max_workers, int) or max_workers < 0):
        raise WorkqueueError(f"set_pool_limits(max_workers={max_workers!r}): "
                             "a worker count >= 0")
    if idle_timeout_ms is not None and (not isinstance(idle_timeout_ms, int | float)
                                        or idle_timeout_ms < 0):
        raise WorkqueueError(f"set_pool_limits(idle_timeout_ms={idle_timeout_ms!r}): "
                             "a duration >= 0")
    rt = current_thread().rt
    st = state(rt)
    spawn = []
    with rt.big:
        if idle_timeout_ms is not None:
            st.idle_timeout_ns = int(idle_timeout_ms * 1e6)
        if max_workers is not None:
            st.max_workers = max_workers
            # A raised limit may let a starved pool start the workers it lacked.
            for pool in st.pools.values():
                w = kick_pool_locked(rt, pool)
                if w is not None:
                    spawn.append(w)
        for pool in st.pools.values():
            rt.wake_all(pool)  # idle workers re-read the timeout
    for w in spawn:
        start_worker(rt, w)
