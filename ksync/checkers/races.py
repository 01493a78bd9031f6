"""The happens-before data race detector.

Counterpart: ThreadSanitizer's race detector (vector clocks; FastTrack
epochs, Flanagan & Freund 2009) — the kernel's KCSAN watches for races by
sampling instead; a model run is small enough to track every access.

Each managed thread has a vector clock ``V`` (list indexed by tid).  An
access is remembered as an *epoch* ``(tid, V[tid])`` with its stack and the
locks held; a later access by another thread races with it unless the
epoch's clock is ``<= V'[tid]`` of the later thread.  Per location the
detector keeps the last write and the last read of each thread (a write
clears the reads it was checked against, as FastTrack does).

Happens-before comes from:

* locks: release → later acquire of the same lock object.  An rwlock keeps
  two clocks, so readers order with writers but not with each other (plain
  writes by two ``read_lock`` holders race);
* ``Atomic`` and ``Refcount`` operations: each one acquires and releases
  the object (atomic vs atomic is never a race: they are not memory here);
* ``spawn`` → the child's start; a thread's end → ``join`` returning;
* ``complete()`` → the wait it satisfies; ``HB_RELEASE`` → ``HB_ACQUIRE``
  on the same object (work queues: ``queue_work`` → the work starting; the
  work ending → ``flush_work`` returning);
* RCU: the end of every read section → the end of any later grace period.
  That is a superset of the sections a grace period waits for (a section
  that began after the grace period did is not waited for), so the
  approximation may hide a race but never invents one.  ``call_rcu`` puts no
  event on the spine, so a callback starts after everything every thread
  did so far (same direction of approximation).

Instrumented memory: ``Shared.read``/``write`` (READ/WRITE events) and
``check_access(obj, field, write=...)`` (ACCESS, location ``obj.field``).
ACCESS also accepts ``"atomic-read"`` / ``"atomic-write"`` as its first
element for an atomic access to a field (a cmpxchg on an SPTE): it
synchronises like an ``Atomic`` and races only with plain accesses.

Shadow state hangs off each object by ``id``; objects that allow weak
references are held weakly and forgotten when collected (or when freed with
``kfree``), others strongly for the run.

Free mode: atomic and refcount events are emitted under ``rt.big``, so they
arrive in the order of the operations.  A lock's RELEASE is emitted just
after the lock is free, so the next holder's ACQUIRED can arrive first; the
detector knows the releaser is then between its unlock and its RELEASE
event (it emits nothing else in between), so its current clock *is* its
release clock and the acquirer joins that instead of waiting (see
``_on_acquired``).  RCU section ends are handled the same way at a grace
period.  Cost per access ~3 µs (a saved stack of up to 8 frames dominates).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from .. import events as ev
from .. import watch
from ..lockmap import LockMap
from ..rcu import RCU_LOCK_MAP
from . import _stacks
from . import races_report as rr
from .races_report import SUPPRESSIONS, add_suppression  # noqa: F401  (public names)
from .races_state import IGNORE as _IGNORE
from .races_state import RCU as _RCU
from .races_state import SYNC as _SYNC
from .races_state import Cell as _Cell
from .races_state import ShadowObj as _Obj
from .races_state import forget as _forget
from .races_state import join as _join

_WRITE = ev.EXCLUSIVE
_STACK_DEPTH = 8
#: ACCESS event op -> (op, atomic); an unknown op counts as a plain read.
_ACCESS_OPS = {"read": ("read", False), "write": ("write", False),
               "atomic-read": ("read", True), "atomic-write": ("write", True)}


class RaceDetector(ev.Checker):
    """The ``races`` checker.  ``suppressions`` and ``suppressed`` as in races_report."""

    name = "races"
    #: The event kinds on_event acts on (the keys of ``_handlers``).
    kinds = frozenset((ev.READ, ev.WRITE, ev.ACCESS, ev.ACQUIRED, ev.RELEASE, ev.ATOMIC,
                       ev.REFCOUNT, ev.COMPLETE, ev.HB_RELEASE, ev.WAIT_DONE, ev.HB_ACQUIRE,
                       ev.SPAWN, ev.JOIN, ev.FREE, ev.RCU_GP, ev.RCU_CALLBACK))

    def __init__(self) -> None:
        self._lk = threading.Lock()
        self._vcs: dict[int, list[int]] = {}
        self._objs: dict[int, _Obj] = {}
        self._dead: list[int] = []
        self._rcu_ended: list[int] = []
        self._rcu_open: dict[int, int] = {}    # tid -> read-section depth as events tell it
        self._created: dict[int, tuple[int, _stacks.Stack]] = {}
        self._seen: set[Any] = set()
        self.suppressions: list[str] = []
        self.suppressed = 0
        self.rt: Any = None
        self._save_stacks = True      # Runtime(stacks=...), read at attach
        self._handlers = {
            ev.READ: self._on_read, ev.WRITE: self._on_write, ev.ACCESS: self._on_access,
            ev.ACQUIRED: self._on_acquired, ev.RELEASE: self._on_release,
            ev.ATOMIC: self._on_rmw, ev.REFCOUNT: self._on_rmw,
            ev.COMPLETE: self._on_release_obj, ev.HB_RELEASE: self._on_release_obj,
            ev.WAIT_DONE: self._on_acquire_obj, ev.HB_ACQUIRE: self._on_acquire_obj,
            ev.SPAWN: self._on_spawn, ev.JOIN: self._on_join, ev.FREE: self._on_free,
            ev.RCU_GP: self._on_rcu_gp, ev.RCU_CALLBACK: self._on_rcu_callback,
        }
        assert set(self._handlers) == self.kinds

    def attach(self, rt: Any) -> None:
        self.rt = rt
        self.suppressions = rr.initial_suppressions()
        self._save_stacks = rt.stacks
        # Names given to ksync.shared(obj, name), so reports say "stats.count".
        self._names: dict[int, tuple[Any, str]] = rt.service(watch.NAMES, dict)

    def _stack(self, skip: int = 5) -> _stacks.Stack:
        """The stack of the event being handled, or NOT_RECORDED when stacks are off.

        ``skip`` counts the frames from ``_stack`` (1) to the code that
        emitted the event: 5 for an access (_stack, _access, _on_*, emit or
        on_event, the emitter), 4 for a spawn.  Suppressions match frames,
        so while there are any stacks are saved anyway.
        """
        if self._save_stacks or self.suppressions:
            # Skip as few frames as any dispatch path has: the walk passes
            # ksync frames by itself, but must never jump past the caller.
            return _stacks.capture_cached(skip, _STACK_DEPTH)
        return _stacks.NOT_RECORDED

    def on_event(self, t: Any, kind: str, obj: Any, arg: Any) -> None:
        h = self._handlers.get(kind)
        if h is not None:
            h(t, kind, obj, arg)

    def handler(self, kind: str) -> Any:
        return self._handlers.get(kind, self.on_event)

    # ------------------------------------------------------------------ state
    def _vc(self, tid: int) -> list[int]:
        v = self._vcs.get(tid)
        if v is None:
            v = self._vcs[tid] = [0] * (tid + 1)
            v[tid] = 1
        return v

    def _obj(self, obj: Any) -> _Obj:
        """The shadow of ``obj`` (``self._lk`` held)."""
        o = self._objs.get(id(obj))
        if o is not None and (o.strong is obj or (o.strong is None and o.ref() is obj)):
            return o
        dead = self._dead
        while dead:
            i = dead.pop()
            old = self._objs.get(i)
            if old is not None and old.strong is None and old.ref() is None:
                del self._objs[i]
        try:
            ref = weakref.ref(obj, _forget(dead, id(obj)))
        except TypeError:
            ref = None
        given = self._names.get(id(obj))
        name = given[1] if given is not None and given[0] is obj else ev.obj_name(obj)
        o = self._objs[id(obj)] = _Obj(obj, ref, name)
        if obj is RCU_LOCK_MAP:
            o.kind = _RCU
        elif isinstance(obj, LockMap):
            o.kind = _IGNORE      # lockdep-only pseudo-locks order nothing
        return o

    def _cell(self, o: _Obj, field: Any) -> _Cell:
        c = o.cells.get(field)
        if c is None:
            if field is None:
                c = _Cell(o.name, f"ksync.Shared '{o.name}'")
            else:
                c = _Cell(f"{o.name}.{field}", f"field '{field}' of {o.name}")
            o.cells[field] = c
        return c

    # ------------------------------------------------------------------ accesses
    def _on_read(self, t: Any, _kind: str, cell: Any, _arg: Any) -> None:
        self._access(t, cell, None, "read", False)

    def _on_write(self, t: Any, _kind: str, cell: Any, _arg: Any) -> None:
        self._access(t, cell, None, "write", False)

    def _on_access(self, t: Any, _kind: str, obj: Any, arg: Any) -> None:
        op, field = arg if isinstance(arg, tuple) else ("read", arg)
        op, atomic = _ACCESS_OPS.get(op, (op, False))
        self._access(t, obj, field, op, atomic)

    def _access(self, t: Any, obj: Any, field: Any, op: str, atomic: bool) -> None:
        tid = t.tid
        # FastTrack's same-epoch rules first, without self._lk: if this thread
        # already made this access here since its last release, nothing can
        # change.  Safe unlocked: every value read is replaced whole, never
        # mutated, and v[tid] changes only on this thread's own events.
        o = self._objs.get(id(obj))
        if o is not None and not (o.strong is obj or (o.strong is None and o.ref() is obj)):
            o = None
        v = self._vcs.get(tid)
        if not atomic and o is not None and v is not None:
            c = o.cells.get(field)
            if c is not None:
                if op == "write":
                    if c.w_ep == (tid, v[tid]):
                        return
                else:
                    r = c.reads.get(tid)
                    if r is not None and r[0] == v[tid] and not r[3]:
                        return
        stack = self._stack()
        held = tuple(t.held)
        with self._lk:
            if v is None:
                v = self._vc(tid)
            # The shadow found above stays obj's while obj lives (we hold it).
            c = self._cell(o if o is not None else self._obj(obj), field)
            if atomic:
                if c.sync is None:
                    c.sync = []
                _join(v, c.sync)
            race = (self._write if op == "write" else self._read)(c, tid, v, stack, held, atomic)
            if atomic:
                c.sync = v[:]
                v[tid] += 1
        if race is not None:
            self._report(t, c, op, atomic, stack, held, race)

    @staticmethod
    def _read(c: _Cell, tid: int, v: list[int], stack: Any, held: tuple,
              atomic: bool) -> tuple | None:
        race = None
        wt = c.w_tid
        if (wt >= 0 and wt != tid and not (atomic and c.w_atomic)
                and c.w_clk > (v[wt] if wt < len(v) else 0)):
            race = ("write", wt, c.w_stack, c.w_held, c.w_atomic)
        c.reads[tid] = (v[tid], stack, held, atomic)
        return race

    @staticmethod
    def _write(c: _Cell, tid: int, v: list[int], stack: Any, held: tuple,
               atomic: bool) -> tuple | None:
        race = None
        wt = c.w_tid
        if (wt >= 0 and wt != tid and not (atomic and c.w_atomic)
                and c.w_clk > (v[wt] if wt < len(v) else 0)):
            race = ("write", wt, c.w_stack, c.w_held, c.w_atomic)
        if c.reads:
            if race is None:
                n = len(v)
                for rt_, (clk, st, hd, at) in c.reads.items():
                    if rt_ != tid and not (atomic and at) and clk > (v[rt_] if rt_ < n else 0):
                        race = ("read", rt_, st, hd, at)
                        break
            c.reads = {}
        c.w_tid = tid
        c.w_clk = v[tid]
        c.w_stack = stack
        c.w_held = held
        c.w_atomic = atomic
        c.w_ep = None if atomic else (tid, v[tid])
        return race

    # ------------------------------------------------------------------ locks
    def _on_acquired(self, t: Any, _kind: str, lock: Any, mode: str) -> None:
        tid = t.tid
        with self._lk:
            o = self._obj(lock)
            if o.kind is _RCU:
                self._rcu_open[tid] = self._rcu_open.get(tid, 0) + 1
                return
            if o.kind is not _SYNC:
                return
            write = mode is _WRITE
            v = self._vc(tid)
            _join(v, o.vc)
            if o.writer >= 0 and o.writer != tid:
                # Free mode: the last writer unlocked but its RELEASE is still
                # on its way; its clock now is its release clock.
                _join(v, self._vc(o.writer))
                o.writer = -1
            if write:
                _join(v, o.rvc)
                if o.readers:
                    for r in o.readers:
                        if r != tid:
                            _join(v, self._vc(r))
                    o.readers = {}
                o.writer = tid
            else:
                o.readers[tid] = o.readers.get(tid, 0) + 1

    def _on_release(self, t: Any, _kind: str, lock: Any, mode: str) -> None:
        tid = t.tid
        with self._lk:
            o = self._obj(lock)
            v = self._vc(tid)
            if o.kind is _RCU:
                n = self._rcu_open.get(tid, 0)
                self._rcu_open[tid] = n - 1 if n > 0 else 0
                if t.rcu_depth == 0:        # end of the outermost read section
                    self._rcu_open[tid] = 0
                    _join(self._rcu_ended, v)
                    v[tid] += 1
                return
            if o.kind is not _SYNC:
                return
            if mode is _WRITE:
                # A join, not a copy: a later holder may have released first.
                _join(o.vc, v)
                if o.writer == tid:
                    o.writer = -1
            else:
                _join(o.rvc, v)
                n = o.readers.get(tid, 0)
                if n > 1:
                    o.readers[tid] = n - 1
                elif n:
                    del o.readers[tid]
            v[tid] += 1

    # ------------------------------------------------------------------ other sync
    def _on_rmw(self, t: Any, _kind: str, obj: Any, _arg: Any) -> None:
        # Atomic and refcount ops are emitted under rt.big, in their real
        # order: each acquires what the previous ones released, then releases.
        tid = t.tid
        with self._lk:
            o = self._obj(obj)
            v = self._vc(tid)
            _join(v, o.vc)
            o.vc = v[:]
            v[tid] += 1

    def _on_release_obj(self, t: Any, _kind: str, obj: Any, _arg: Any) -> None:
        with self._lk:
            o = self._obj(obj)
            v = self._vc(t.tid)
            _join(o.vc, v)
            v[t.tid] += 1

    def _on_acquire_obj(self, t: Any, _kind: str, obj: Any, _arg: Any) -> None:
        with self._lk:
            _join(self._vc(t.tid), self._obj(obj).vc)

    def _on_spawn(self, parent: Any, _kind: str, child: Any, _arg: Any) -> None:
        stack = self._stack(4)      # one frame fewer than an access: no _access
        with self._lk:
            v = self._vc(parent.tid)
            cv = v[:]
            if len(cv) <= child.tid:
                cv.extend([0] * (child.tid + 1 - len(cv)))
            cv[child.tid] = 1
            self._vcs[child.tid] = cv
            v[parent.tid] += 1
            self._created[child.tid] = (parent.tid, stack)

    def _on_join(self, t: Any, _kind: str, joined: Any, _arg: Any) -> None:
        with self._lk:
            _join(self._vc(t.tid), self._vc(joined.tid))

    def _on_free(self, _t: Any, _kind: str, obj: Any, _arg: Any) -> None:
        # Freed memory starts a new life (TSan resets shadow on free);
        # the use-after-free checker watches what happens to it now.
        with self._lk:
            o = self._objs.get(id(obj))
            if o is not None and (o.strong is obj or (o.strong is None and o.ref() is obj)):
                o.cells.clear()

    def _on_rcu_gp(self, t: Any, _kind: str, _obj: Any, _arg: Any) -> None:
        threads = self.rt.threads
        with self._lk:
            v = self._vc(t.tid)
            _join(v, self._rcu_ended)
            for tid, depth in self._rcu_open.items():
                # Free mode: a section that ended before the grace period
                # whose RELEASE has not arrived; its clock now is its end.
                if depth > 0 and tid != t.tid and threads[tid].rcu_depth == 0:
                    _join(v, self._vc(tid))

    def _on_rcu_callback(self, t: Any, _kind: str, _obj: Any, _arg: Any) -> None:
        with self._lk:
            v = self._vc(t.tid)
            for other in list(self._vcs.values()):
                if other is not v:
                    _join(v, other)

    # ------------------------------------------------------------------ reports
    def _report(self, t: Any, c: _Cell, op: str, atomic: bool, stack: Any, held: tuple,
                race: tuple) -> None:
        pop, ptid, pstack, pheld, patomic = race
        key = (frozenset((_stacks.site_key(stack), _stacks.site_key(pstack))) if stack or pstack
               else c.name)
        with self._lk:
            if key in self._seen:
                return
            self._seen.add(key)
        if rr.suppressed(self.suppressions, stack, pstack):
            self.suppressed += 1
            return
        rt = self.rt
        cur = {"op": op, "atomic": atomic, "tid": t.tid, "stack": stack, "held": held}
        prev = {"op": pop, "atomic": patomic, "tid": ptid, "stack": pstack, "held": pheld}
        text = rr.render(rt, c.name, c.what, cur, prev, self._created)
        pname = rt.threads[ptid].name if ptid < len(rt.threads) else "?"
        title = (f"data race on {c.name}: {rr.op_word(op, atomic).lower()} by {t.name} at "
                 f"{_stacks.top(stack)} vs previous {rr.op_word(pop, patomic).lower()} "
                 f"by {pname} at {_stacks.top(pstack)}")
        rt.report("data-race", title, text, thread=t, location=c.name,
                  access=rr.access_dict(rt, cur), previous=rr.access_dict(rt, prev))
