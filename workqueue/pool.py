"""Worker pools: kworker threads that take works off a worklist and run them.

Kernel counterparts: ``struct worker_pool``, ``struct worker``,
``worker_thread()``, ``rescuer_thread()``, ``process_one_work()``,
``create_worker()``, ``send_mayday()`` (kernel/workqueue.c).

How a pool works here
---------------------
One pool per (bound/unbound, normal/high priority) per runtime, shared by
every queue with those attributes, as the kernel shares its standard pools.
A queued work sits on ``pool.worklist``; an idle worker parks on the pool
(an IDLE wait, so a pool of idle workers is never mistaken for a deadlock).

* Waking: when the worklist holds more works than there are workers already
  on their way to it (idle-but-woken or just started), one idle worker is
  woken; if none is idle and the pool is under its limit, a worker is
  created (``create_worker`` from the queueing context — the model has no
  manager role).  The kernel's concurrency management (waking a second
  worker only when the running one sleeps) is not modelled: every pool acts
  like an unbound one, so works run in parallel up to the worker limit.
* Non-reentrancy: a worker that takes a work already running on another
  worker hands it to that worker's ``scheduled`` list, so a work never runs
  on two workers at once and a requeue while running runs right after.
* Idling out: a worker idle for ``idle_timeout`` exits unless it is the
  pool's last one (which waits without a timeout, so an idle pool costs no
  virtual-time timers).
* Mayday: when works wait, no worker is free and none may be created, each
  WQ_MEM_RECLAIM queue with works on the worklist gets its rescuer woken;
  the rescuer runs that queue's works itself (forward progress without a new
  thread, which is what a rescuer guarantees under memory pressure).

Field rules: "B" = only under ``rt.big``; "I" = set at creation.
"""

from __future__ import annotations

import traceback
from collections import deque
from typing import Any

from ksync import current_thread, events, lock_map_acquire, lock_map_release
from ksync.events import EXCLUSIVE


class Worker:
    """Kernel: struct worker.  ``rescuer`` is True for a queue's rescuer."""

    __slots__ = ("name", "pool", "thread", "current", "current_wq", "scheduled", "stop",
                 "_waiters")
    rescuer = False

    def __init__(self, name: str, pool: WorkerPool) -> None:
        self.name = name                    # I
        self.pool = pool                    # I
        self.thread: Any = None             # B: the KThread, once spawned
        self.current: Any = None            # B: the Work being run
        self.current_wq: Any = None         # B: the queue it was taken from
        self.scheduled: deque = deque()     # B: works that collided with ``current``
        self.stop = False                   # B: exit when idle (pool unused, queue destroyed)
        self._waiters: list = []            # rescuers park on themselves

    def __repr__(self) -> str:
        return f"<Worker {self.name}>"


class Rescuer(Worker):
    """Kernel: wq->rescuer — one per WQ_MEM_RECLAIM queue, named after it."""

    __slots__ = ("wq", "mayday")
    rescuer = True

    def __init__(self, wq: Any) -> None:
        super().__init__(wq.name, wq.pool)
        self.wq = wq                        # I
        self.mayday = False                 # B: the pool asked for help


class WorkerPool:
    """Kernel: struct worker_pool.  Everything but the I fields is under rt.big."""

    __slots__ = ("st", "id", "unbound", "highpri", "name", "worklist", "workers", "nr_avail",
                 "_waiters", "reclaim_wqs", "nr_users", "next_id", "peak_workers")

    def __init__(self, st: Any, pool_id: int, unbound: bool, highpri: bool) -> None:
        self.st = st                        # I: the runtime's WqState
        self.id = pool_id                   # I
        self.unbound = unbound              # I
        self.highpri = highpri              # I
        self.name = f"pool {pool_id} ({'unbound' if unbound else 'cpu 0'}" \
                    f"{', highpri' if highpri else ''})"
        self.worklist: deque = deque()      # B: active works waiting for a worker
        self.workers: list[Worker] = []     # B: live workers (not rescuers)
        # B: workers not running a work — idle, woken but not yet back, or starting.
        self.nr_avail = 0
        self._waiters: list = []            # B: the idle workers' KThreads
        self.reclaim_wqs: list[Any] = []    # B: WQ_MEM_RECLAIM queues using this pool
        self.nr_users = 0                   # B: live queues using this pool
        self.next_id = 0                    # B
        self.peak_workers = 0               # B: most workers alive at once (for tests/stats)

    def worker_name(self, n: int) -> str:
        """Kernel naming: kworker/<cpu>:<id>[H] bound, kworker/u<pool>:<id> unbound."""
        if self.unbound:
            return f"kworker/u{self.id}:{n}"
        return f"kworker/0:{n}{'H' if self.highpri else ''}"

    def holders(self) -> list[Any]:
        return []

    def __repr__(self) -> str:
        return f"<WorkerPool {self.name}>"


# --------------------------------------------------------------------------- waking
def kick_pool_locked(rt: Any, pool: WorkerPool) -> Worker | None:
    """See that someone will take the worklist's works; maybe return a worker to start.

    Context: rt.big.  The returned Worker is counted already; the caller
    starts it with ``start_worker`` after dropping rt.big (spawning takes it).
    """
    on_the_way = pool.nr_avail - len(pool._waiters)
    if len(pool.worklist) <= on_the_way:
        return None
    if pool._waiters:
        rt.wake_one(pool)
        return None
    if len(pool.workers) < pool.st.max_workers and not rt.stopping and not rt.aborting:
        pool.next_id += 1
        w = Worker(pool.worker_name(pool.next_id), pool)
        pool.workers.append(w)
        pool.nr_avail += 1
        pool.peak_workers = max(pool.peak_workers, len(pool.workers))
        return w
    send_mayday_locked(rt, pool)
    return None


def send_mayday_locked(rt: Any, pool: WorkerPool) -> None:
    """Kernel: send_mayday() — wake the rescuers of reclaim queues with waiting works."""
    for wq in pool.reclaim_wqs:
        r = wq.rescuer
        if wq.nr_listed and r is not None and not r.mayday:
            r.mayday = True
            rt.wake_all(r)


def start_worker(rt: Any, w: Worker) -> None:
    """Kernel: create_worker() — spawn the kthread of a Worker counted by kick_pool_locked."""
    entry = rescuer_thread if w.rescuer else worker_thread
    t = rt.spawn(entry, w, name=w.name, daemon=True)
    with rt.big:
        if w.thread is None:
            w.thread = t


# --------------------------------------------------------------------------- taking works
def _claim_locked(work: Any, w: Worker) -> None:
    """The work leaves the queue and starts on ``w``: PENDING is cleared now.  Context: rt.big."""
    wq = work._pwq
    work._where = None
    work._pwq = None
    work._pending = False
    work._worker = w
    work._run_seq = work._seq
    work._run_wq = wq
    work._run_qseq = work._qseq
    w.current = work
    w.current_wq = wq


def take_work_locked(rt: Any, w: Worker) -> tuple[Any, Worker | None]:
    """Next work for worker ``w`` (its scheduled list first), or None.  Context: rt.big.

    Returns (work, worker to start).  A work still running elsewhere is moved
    to that worker's scheduled list (kernel: the collision check in
    process_one_work), which is what keeps a work on one worker at a time.
    """
    pool = w.pool
    sched = w.scheduled
    worklist = pool.worklist
    while sched or worklist:
        if sched:
            work = sched.popleft()
        else:
            work = worklist.popleft()
            work._pwq.nr_listed -= 1
        owner = work._worker
        if owner is not None:
            owner.scheduled.append(work)
            work._where = owner.scheduled
            continue
        _claim_locked(work, w)
        pool.nr_avail -= 1
        spawn = kick_pool_locked(rt, pool) if worklist else None
        return work, spawn
    return None, None


def take_rescue_work_locked(rt: Any, r: Rescuer) -> Any:
    """Next work for rescuer ``r``: its scheduled list, else its queue's works on the worklist."""
    if r.scheduled:
        work = r.scheduled.popleft()
        _claim_locked(work, r)
        return work
    wq = r.wq
    worklist = r.pool.worklist
    while r.mayday and wq.nr_listed:
        work = next(x for x in worklist if x._pwq is wq)
        worklist.remove(work)
        wq.nr_listed -= 1
        owner = work._worker
        if owner is not None:
            owner.scheduled.append(work)
            work._where = owner.scheduled
            continue
        _claim_locked(work, r)
        return work
    r.mayday = False
    return None


# --------------------------------------------------------------------------- threads
def worker_thread(w: Worker) -> None:
    """Kernel: worker_thread() — take works until idle too long, retired, or runtime exit.

    ``destroy_workqueue`` retires a pool's workers (``stop``) when its last
    queue goes; the runtime's exit wakes idle workers with ``rt.stopping``.
    """
    t = current_thread()
    rt = t.rt
    pool = w.pool
    st = pool.st
    with rt.big:
        w.thread = t
        st.worker_of[t] = w
    try:
        while True:
            with rt.big:
                while True:
                    if w.stop:
                        return      # destroy_workqueue retired this pool's workers
                    work, spawn = take_work_locked(rt, w)
                    if work is not None:
                        break
                    # The last worker waits without a timeout: an idle pool
                    # must not keep the virtual clock ticking.
                    timeout = st.idle_timeout_ns if len(pool.workers) > 1 else None
                    if rt.wait(t, pool, "work to do", timeout_ns=timeout, idle=True):
                        continue
                    if rt.stopping:
                        if not (pool.worklist or w.scheduled):
                            _leave_pool_locked(pool, w)
                            return
                    elif timeout is not None and len(pool.workers) > 1 and not pool.worklist:
                        # Leave under this same hold: a worker still counted as
                        # available after it stopped looking would swallow a wake-up.
                        _leave_pool_locked(pool, w)
                        return      # idled out
            if spawn is not None:
                start_worker(rt, spawn)
            process_one_work(rt, t, w, work)
    finally:
        with rt.big:
            _leave_pool_locked(pool, w)
            st.worker_of.pop(t, None)


def _leave_pool_locked(pool: WorkerPool, w: Worker) -> None:
    """The worker stops counting as one of the pool's (idle) workers.  Context: rt.big."""
    if w in pool.workers:
        pool.workers.remove(w)
        pool.nr_avail -= 1


def rescuer_thread(r: Rescuer) -> None:
    """Kernel: rescuer_thread() — on mayday, run this queue's works from the pool's list."""
    t = current_thread()
    rt = t.rt
    st = r.pool.st
    with rt.big:
        r.thread = t
        st.worker_of[t] = r
    try:
        while True:
            with rt.big:
                while True:
                    work = take_rescue_work_locked(rt, r)
                    if work is not None:
                        break
                    if r.stop:
                        return
                    if not rt.wait(t, r, f"mayday for {r.wq.name}", idle=True) and rt.stopping:
                        return
            process_one_work(rt, t, r, work)
    finally:
        with rt.big:
            st.worker_of.pop(t, None)


def process_one_work(rt: Any, t: Any, w: Worker, work: Any) -> None:
    """Kernel: process_one_work() — run one work with the lockdep maps held.

    Context: called without rt.big, with ``work`` claimed by ``w``.  The
    queue's map and then the work's map are held across the call, so that
    lockdep learns "this work runs under these locks" and a flush taking the
    same maps closes any cycle.  An exception is reported and swallowed so
    the worker lives on; RunAborted (a BaseException) unwinds the worker.
    """
    wq = w.current_wq
    listeners = rt.listeners
    if listeners:
        # queue_work -> this run, and the previous run's end -> this run
        # (a work's runs are serialised, so its private state needs no lock).
        rt.emit(t, events.HB_ACQUIRE, work, None)
        rt.emit(t, events.HB_ACQUIRE, work.done_hb, None)
        rt.emit(t, events.CUSTOM, work, ("work_start", wq.name, work.name))
    wq_map, work_map = wq.lockdep_map, work.lockdep_map
    held = t.held
    if listeners:
        lock_map_acquire(wq_map)
        lock_map_acquire(work_map)
    else:
        # No checker: recording the maps as held is all lock_map_acquire would do.
        held.append((wq_map, EXCLUSIVE))
        held.append((work_map, EXCLUSIVE))
    depth, atomic, rcu = len(held), t.atomic, t.rcu_depth
    try:
        work.func(work)
    except Exception as e:  # noqa: BLE001 - a failing work must not kill the worker
        _report_exception(rt, t, w, wq, work, e)
    finally:
        leaked = (len(held), t.atomic, t.rcu_depth) != (depth, atomic, rcu)
        if not listeners and not leaked and held[-1][0] is work_map and held[-2][0] is wq_map:
            del held[-2:]
        else:
            lock_map_release(work_map)
            lock_map_release(wq_map)
    if leaked:
        _report_leak(rt, t, w, work)
    if listeners:
        # This run's end -> flush_work / cancel_work_sync / flush_workqueue returning.
        rt.emit(t, events.HB_RELEASE, work.done_hb, None)
        rt.emit(t, events.HB_RELEASE, wq, None)
        rt.emit(t, events.CUSTOM, work, ("work_end", wq.name, work.name))
    pool = w.pool
    with rt.big:
        work._worker = None
        w.current = None
        w.current_wq = None
        if not w.rescuer:
            pool.nr_avail += 1
        spawn = wq.work_done_locked(rt, work)
        if work._waiters:
            rt.wake_all(work)
    if spawn is not None:
        start_worker(rt, spawn)
    # Kernel: cond_resched() after each work — a worker with a long list lets others in.
    rt.point(t)


def _func_name(work: Any) -> str:
    fn = work.func
    return getattr(fn, "__qualname__", None) or repr(fn)


def _report_exception(rt: Any, t: Any, w: Worker, wq: Any, work: Any, e: Exception) -> None:
    fn = _func_name(work)
    tb = "".join(traceback.format_exception(type(e), e, e.__traceback__)).rstrip()
    rt.report("warn", f"workqueue: {fn} raised {type(e).__name__} in {w.name}",
              f"WARNING: work function raised an exception\n"
              f"workqueue: {wq.name} work {work.name} function {fn}\n"
              f"worker: {w.name} (continues with its next work)\n{tb}",
              thread=t, work=work.name, function=fn, worker=w.name, workqueue=wq.name,
              exception=f"{type(e).__name__}: {e}")


def _report_leak(rt: Any, t: Any, w: Worker, work: Any) -> None:
    held = ", ".join(getattr(lk, "name", str(lk)) for lk, _m in t.held) or "none"
    fn = _func_name(work)
    rt.report("warn", f"workqueue leaked lock or atomic: {w.name} after {fn}",
              f"BUG: workqueue leaked lock or atomic: {w.name}/{t.tid}\n"
              f"    last function: {fn}\n"
              f"    locks held: {held}; atomic depth {t.atomic}; rcu depth {t.rcu_depth}",
              thread=t, work=work.name, function=fn, worker=w.name)
