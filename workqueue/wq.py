"""Work queues: alloc, queue, destroy.

Kernel counterparts: ``struct workqueue_struct`` and its ``pool_workqueue``
(one per queue here, as there is one pool per attribute set), with
``alloc_workqueue()``, ``alloc_ordered_workqueue()``, ``queue_work()``
(``__queue_work``, ``insert_work``, ``pwq_activate_inactive_work``),
``destroy_workqueue()`` (kernel/workqueue.c).

Accounting, all under ``rt.big``:

* ``nr_active`` — works of this queue on the pool's worklist, on a worker's
  scheduled list, or running.  At ``max_active`` further queueings wait on
  ``inactive`` (in order) and are activated one by one as works end; this
  is how ``max_active`` caps concurrency and how an ordered queue
  (``max_active`` 1) runs one work at a time in queueing order.
* ``qseq``/``nr_inflight`` — every queueing gets the next ``qseq``; it is in
  flight until its run ends or it is cancelled.  ``flush_workqueue`` counts
  down the queueings in flight when it began (the kernel's flush colours).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from ksync import LockMap, current_thread, events, might_sleep

from . import ops
from .flush import _Flusher, drain_nosleep, drain_workqueue, flush_workqueue
from .pool import Rescuer, WorkerPool, kick_pool_locked, start_worker
from .state import WorkqueueError, WqState, resolve_wq, site, state
from .work import Work

# Kernel: enum { WQ_UNBOUND, ... } — the values mirror include/linux/workqueue.h.
WQ_UNBOUND = 1 << 1
WQ_FREEZABLE = 1 << 2
WQ_MEM_RECLAIM = 1 << 3
WQ_HIGHPRI = 1 << 4
WQ_CPU_INTENSIVE = 1 << 5
WQ_SYSFS = 1 << 6
WQ_POWER_EFFICIENT = 1 << 7
# The kernel's __WQ_ORDERED; one underscore, as Python mangles __names in classes.
_WQ_ORDERED = 1 << 17
WQ_MAX_ACTIVE = 512
WQ_DFL_ACTIVE = WQ_MAX_ACTIVE // 2
_KNOWN_FLAGS = (WQ_UNBOUND | WQ_FREEZABLE | WQ_MEM_RECLAIM | WQ_HIGHPRI | WQ_CPU_INTENSIVE
                | WQ_SYSFS | WQ_POWER_EFFICIENT | _WQ_ORDERED)


class Workqueue:
    """A queue of works run by a shared worker pool.  Make one with ``alloc_workqueue``.

    Usable as a context manager (``with alloc_workqueue("x") as wq:``) that
    destroys it on exit.  Fields other than the I ones are under ``rt.big``.
    """

    __slots__ = ("name", "flags", "max_active", "rt", "pool", "lockdep_map", "rescuer",
                 "nr_active", "inactive", "nr_listed", "qseq", "nr_inflight", "flushers",
                 "nr_drainers", "destroyed", "system", "_waiters", "__weakref__")

    def __init__(self, st: WqState, pool: WorkerPool, name: str, flags: int,
                 max_active: int, system: bool = False) -> None:
        self.name = name                      # I
        self.flags = flags                    # I
        self.max_active = max_active          # I
        self.rt = st.rt                       # I
        self.pool = pool                      # I
        self.system = system                  # I: system_wq & co may not be destroyed
        self.lockdep_map = LockMap(f"(wq_completion){name}")  # I
        self.rescuer: Rescuer | None = None   # I (after alloc)
        self.nr_active = 0
        self.inactive: deque = deque()
        self.nr_listed = 0                    # works of this queue on pool.worklist
        self.qseq = 0
        self.nr_inflight = 0
        self.flushers: list[_Flusher] = []
        self.nr_drainers = 0
        self.destroyed = False
        self._waiters: list = []

    @property
    def ordered(self) -> bool:
        return bool(self.flags & _WQ_ORDERED)

    # ---------------------------------------------------------------- accounting
    def insert_locked(self, rt: Any, work: Work) -> Any:
        """Kernel: __queue_work()'s tail — PENDING is set; put it on a list.  Context: rt.big.

        Returns a Worker to start after rt.big is dropped, or None.
        """
        self.qseq += 1
        work._qseq = self.qseq
        work._pwq = self
        self.nr_inflight += 1
        if self.nr_active < self.max_active:
            self.nr_active += 1
            worklist = self.pool.worklist
            worklist.append(work)
            work._where = worklist
            self.nr_listed += 1
            return kick_pool_locked(rt, self.pool)
        self.inactive.append(work)
        work._where = self.inactive
        return None

    def activate_locked(self, rt: Any) -> Any:
        """Kernel: pwq_activate_first_inactive() — room under max_active.  Context: rt.big."""
        if not self.inactive or self.nr_active >= self.max_active:
            return None
        work = self.inactive.popleft()
        self.nr_active += 1
        worklist = self.pool.worklist
        worklist.append(work)
        work._where = worklist
        self.nr_listed += 1
        return kick_pool_locked(rt, self.pool)

    def retire_locked(self, rt: Any, qseq: int) -> None:
        """A queueing ran or was cancelled: count it off every flush that waits for it."""
        self.nr_inflight -= 1
        for f in self.flushers:
            if qseq <= f.target:
                f.remaining -= 1
                if f.remaining == 0:
                    rt.wake_all(f)

    def work_done_locked(self, rt: Any, work: Work) -> Any:
        """Kernel: pwq_dec_nr_in_flight() after a run.  Context: rt.big."""
        self.retire_locked(rt, work._run_qseq)
        self.nr_active -= 1
        return self.activate_locked(rt)

    def unqueue_locked(self, rt: Any, work: Work) -> Any:
        """Take a pending-on-queue work off its list (cancel, mod).  Context: rt.big."""
        where = work._where
        where.remove(work)
        if where is self.pool.worklist:
            self.nr_listed -= 1
        spawn = None
        if where is not self.inactive:
            self.nr_active -= 1
            spawn = self.activate_locked(rt)
        self.retire_locked(rt, work._qseq)
        work._pwq = None
        work._where = None
        return spawn

    def busy_threads(self) -> list[Any]:
        """KThreads now running a work of this queue (who a flush of it waits for)."""
        return [w.thread for w in self.pool.st.worker_of.values()
                if w.current_wq is self and w.thread is not None]

    # ---------------------------------------------------------------- Python-style API
    def queue(self, work: Work) -> bool:
        """``queue_work(self, work)``."""
        return queue_work(self, work)

    def queue_delayed(self, dwork: Any, delay_ms: float) -> bool:
        """``queue_delayed_work(self, dwork, delay_ms)``."""
        return ops.queue_delayed_work(self, dwork, delay_ms)   # timer.py is above

    def mod_delayed(self, dwork: Any, delay_ms: float) -> bool:
        """``mod_delayed_work(self, dwork, delay_ms)``."""
        return ops.mod_delayed_work(self, dwork, delay_ms)

    def flush(self) -> None:
        """``flush_workqueue(self)``."""
        flush_workqueue(self)

    def drain(self) -> None:
        """``drain_workqueue(self)``."""
        drain_workqueue(self)

    def destroy(self) -> None:
        """``destroy_workqueue(self)``."""
        destroy_workqueue(self)

    def resolve(self, rt: Any) -> Workqueue:
        if self.rt is not rt:
            raise WorkqueueError(f"workqueue {self.name!r} belongs to another ksync.Runtime "
                                 f"(used at {site()})")
        return self

    def __enter__(self) -> Workqueue:
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self.destroyed:
            destroy_workqueue(self)

    def __repr__(self) -> str:
        return f"<Workqueue {self.name}{' destroyed' if self.destroyed else ''}>"


# ---------------------------------------------------------------------------- alloc
def _check_args(name: Any, flags: Any, max_active: Any) -> None:
    if not isinstance(name, str) or not name:
        raise WorkqueueError(f"alloc_workqueue(name={name!r}): a work queue needs a name")
    if not isinstance(flags, int) or flags & ~_KNOWN_FLAGS:
        raise WorkqueueError(f"alloc_workqueue({name!r}, flags={flags!r}): unknown flag bits; "
                             "use WQ_UNBOUND | WQ_MEM_RECLAIM | WQ_HIGHPRI | WQ_CPU_INTENSIVE")
    if not isinstance(max_active, int) or max_active < 0:
        raise WorkqueueError(f"alloc_workqueue({name!r}, max_active={max_active!r}): "
                             f"0 (the default, {WQ_DFL_ACTIVE}) or 1..{WQ_MAX_ACTIVE}")


def alloc_locked(st: WqState, name: str, flags: int, max_active: int,
                 system: bool = False) -> Workqueue:
    """Make the queue and attach it to its pool (no rescuer).  Context: rt.big."""
    pool = st.pool_locked(bool(flags & WQ_UNBOUND), bool(flags & WQ_HIGHPRI))
    wq = Workqueue(st, pool, name, flags, max_active, system)
    pool.nr_users += 1
    st.workqueues.append(wq)
    return wq


def alloc_workqueue(name: str, flags: int = 0, max_active: int = 0, *args: Any) -> Workqueue:
    """Kernel: alloc_workqueue(fmt, flags, max_active, ...).

    ``name % args`` names the queue when ``args`` are given.  ``max_active``
    0 means the default (256); above 512 it is clamped with a warning, as
    the kernel does.  WQ_MEM_RECLAIM starts a rescuer kthread named after
    the queue.  WQ_CPU_INTENSIVE is accepted and has no further effect
    (concurrency management is not modelled); WQ_HIGHPRI queues use their
    own pool, whose workers are named ``kworker/0:NH``.
    """
    if args:
        name = name % args
    _check_args(name, flags, max_active)
    t = current_thread()
    rt = t.rt
    if max_active > WQ_MAX_ACTIVE:
        rt.report("warn", f"workqueue: max_active {max_active} requested for {name} is out "
                  f"of range, clamping to {WQ_MAX_ACTIVE}",
                  f"workqueue: max_active {max_active} requested for {name} is out of range, "
                  f"clamping between 1 and {WQ_MAX_ACTIVE}\n  at {site()}", thread=t)
        max_active = WQ_MAX_ACTIVE
    st = state(rt)
    with rt.big:
        wq = alloc_locked(st, name, flags, max_active or WQ_DFL_ACTIVE)
        if flags & WQ_MEM_RECLAIM:
            wq.rescuer = Rescuer(wq)
            wq.pool.reclaim_wqs.append(wq)
    if wq.rescuer is not None:
        start_worker(rt, wq.rescuer)
    if rt.listeners:
        rt.emit(t, events.CUSTOM, wq, ("alloc_workqueue", name, flags, wq.max_active))
    return wq


def alloc_ordered_workqueue(name: str, flags: int = 0, *args: Any) -> Workqueue:
    """Kernel: alloc_ordered_workqueue() — one work at a time, in queueing order."""
    return alloc_workqueue(name, WQ_UNBOUND | _WQ_ORDERED | flags, 1, *args)


# ---------------------------------------------------------------------------- queue
def queue_work(wq: Any, work: Work) -> bool:
    """Kernel: queue_work() — queue ``work`` on ``wq``; False if it was already pending.

    A work queued while it runs runs once more afterwards.  Queueing on a
    destroyed queue, or from outside on a draining one, queues nothing and
    files a ``warn`` report naming the work, the queue and the call site.
    Safe in atomic context.  Cost: O(1) under one ``rt.big`` hold, plus a
    thread spawn when the pool must grow.
    """
    t = current_thread()
    rt = t.rt
    if type(wq) is not Workqueue:
        wq = resolve_wq(wq, rt)
    elif wq.rt is not rt:
        wq.resolve(rt)
    if not isinstance(work, Work):
        raise WorkqueueError(f"queue_work({wq.name}, {work!r}): not a workqueue.Work "
                             f"(at {site()})")
    rt.point(t)
    if rt.listeners:
        # Even a queue_work that finds the work pending orders the caller's
        # writes before the pending run (the kernel's test_and_set_bit is a
        # full barrier), so the release is emitted either way.
        rt.emit(t, events.HB_RELEASE, work, None)
    refused = ""
    spawn = None
    with rt.big:
        if work._pending or work._canceling:
            return False
        if wq.destroyed:
            refused = "destroyed"
        elif wq.nr_drainers and not is_chained_locked(wq, t):
            refused = "draining"
        else:
            work._pending = True
            work._seq += 1
            spawn = wq.insert_locked(rt, work)
    if refused:
        report_refused(rt, t, wq, work, refused)
        return False
    if rt.listeners:
        # Before the worker starts: a new worker may run at once, and a trace
        # must show the queueing before the work's start.
        rt.emit(t, events.CUSTOM, work, ("queue_work", wq.name, work.name))
    if spawn is not None:
        start_worker(rt, spawn)
    return True


def is_chained_locked(wq: Workqueue, t: Any) -> bool:
    """Kernel: is_chained_work() — is ``t`` a worker running a work of ``wq``?"""
    w = wq.pool.st.worker_of.get(t)
    return w is not None and w.current_wq is wq


def report_refused(rt: Any, t: Any, wq: Workqueue, work: Work, why: str) -> None:
    where = site()
    if why == "destroyed":
        title = f"queue_work: {work.name} queued on destroyed workqueue {wq.name}"
        detail = f"workqueue {wq.name} was destroyed; the work was not queued"
    else:
        title = f"queue_work: {work.name} queued on draining workqueue {wq.name}"
        detail = (f"workqueue {wq.name} is draining and only its own works may queue on it; "
                  "the work was not queued")
    rt.report("warn", title,
              f"WARNING: at __queue_work\n{detail}\n"
              f"  work: {work.name}\n  by: {t.name}\n  at: {where}",
              thread=t, work=work.name, workqueue=wq.name, site=where)


def destroy_workqueue(wq: Any) -> None:
    """Kernel: destroy_workqueue() — drain, stop the rescuer and idle workers, then refuse.

    A pool no live queue uses any more stops its workers, and this call
    waits for them to exit.  Destroying twice is a ``warn`` report;
    destroying a system queue is an error.
    """
    might_sleep()
    t = current_thread()
    rt = t.rt
    wq = resolve_wq(wq, rt)
    if wq.system:
        raise WorkqueueError(f"destroy_workqueue({wq.name}): a system work queue lives as "
                             f"long as the runtime (at {site()})")
    with rt.big:
        again = wq.destroyed
    if again:
        rt.report("warn", f"destroy_workqueue: {wq.name} destroyed twice",
                  f"WARNING: destroy_workqueue() on an already destroyed workqueue "
                  f"{wq.name}\n  at {site()}", thread=t, workqueue=wq.name)
        return
    drain_nosleep(rt, t, wq)
    joins = []
    with rt.big:
        wq.destroyed = True
        st = wq.pool.st
        if wq in st.workqueues:
            st.workqueues.remove(wq)
        pool = wq.pool
        pool.nr_users -= 1
        if wq in pool.reclaim_wqs:
            pool.reclaim_wqs.remove(wq)
        r = wq.rescuer
        if r is not None:
            r.stop = True
            rt.wake_all(r)
            joins.append(r.thread)
        if pool.nr_users == 0:
            # Retire exactly the workers alive now: a queue allocated on this
            # pool meanwhile makes fresh ones instead of keeping these alive.
            for w in pool.workers:
                w.stop = True
                joins.append(w.thread)
            pool.nr_avail -= len(pool.workers)
            pool.workers.clear()
            rt.wake_all(pool)
    for th in joins:
        if th is not None and th is not t:
            th.join()
    if rt.listeners:
        rt.emit(t, events.CUSTOM, wq, ("destroy_workqueue", wq.name))


# Work.queue() sits below this file (see ops.py).
ops.bind(queue_work=queue_work)
