"""lockdep: the runtime locking correctness validator.

Kernel counterpart: kernel/locking/lockdep.c.  Every lock belongs to a class
(its ``name``, plus ``subclass`` for annotated nesting); each acquisition made
while other locks are held adds dependencies ``held -> new`` between classes,
tagged with the acquisition kinds (exclusive, non-recursive reader,
recursive reader — see lockdep_graph.py).  When a dependency is seen for the
first time, a breadth-first search looks for a strong path back; one found
is a lock inversion that *can* deadlock, reported even though this run did
not deadlock.  Unlike the kernel's, this lockdep keeps going after a report;
each distinct cycle is reported once.

What it reports:

* ``circular-locking-dependency`` — an inversion (ABBA, longer chains,
  reader/writer inversions through non-recursive ``read_lock``, work-queue
  pseudo-locks: flushing a work while holding a lock the work takes);
* ``recursive-locking`` — taking a class already held, unless both are
  readers and the new one is recursive (RCU).  On x86, ``read_lock`` of an
  rwlock_t in task context is a non-recursive reader, so re-taking
  ``mmu_lock`` for read is reported: a queued writer makes it deadlock;
* ``held-lock-freed`` — ``kfree`` of a lock (or of an object with a lock
  among its fields) that some thread holds.

``lock-held-at-exit``, ``bad-unlock`` and failed ``lockdep_assert_held`` are
filed by the runtime and the primitives themselves when lockdep is enabled.

Trylocks add no dependency to the lock they take (they cannot wait) but
that lock is then held like any other.  Cost per acquisition with locks
held: a site capture (~1 µs) and two dict probes per held lock; the search
runs only for new dependencies.  Thread-safety: graph additions take
``self._lock``; the lookups before it are single dict reads.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from .. import events as ev
from ..lockmap import LockMap
from ..rcu import RCU_LOCK_MAP
from . import _stacks
from . import lockdep_report as rep
from .lockdep_graph import KIND_NAMES, Dep, DepGraph, dep_kind

_ACQUIRE, _RELEASE, _FREE, _ALLOC = ev.ACQUIRE, ev.RELEASE, ev.FREE, ev.ALLOC
_WRITE, _READ, _RREAD = ev.EXCLUSIVE, ev.READER, ev.RECURSIVE_READER


def class_key(lock: Any) -> str:
    """The lockdep class of a lock: its name, with ``/subclass`` when nested."""
    sub = lock.subclass
    return lock.name if not sub else f"{lock.name}/{sub}"


def _is_trylock(t: Any, lock: Any, mode: str, held: list, n: int) -> bool:
    """True if this ACQUIRE comes from a successful trylock.

    The primitives emit ACQUIRE for a trylock only after taking the lock,
    and for a blocking lock before waiting, so a lock already ours that the
    held list does not show yet is a trylock.  (An explicit flag on the
    event would be better; see the report of issue 5.)
    """
    if mode is _WRITE:
        if lock.owner is not t:
            return False
        return not any(h[0] is lock for h in held[:n])
    if mode is _READ:
        readers = getattr(lock, "readers", None)
        if not readers or t not in readers:
            return False
        return readers.count(t) > sum(1 for h in held[:n] if h[0] is lock)
    return False


class Lockdep(ev.Checker):
    """The ``lockdep`` checker; ``graph`` holds the dependency graph.

    ``to_dot()`` / ``to_json()`` export it.  Fetch the instance of a run
    with ``ksync.checkers.get_checker(rt, "lockdep")``.
    """

    name = "lockdep"
    #: The event kinds on_event acts on (the runtime tells it no others).
    kinds = frozenset((_ACQUIRE, _RELEASE, _FREE, _ALLOC))

    def __init__(self) -> None:
        self.graph = DepGraph()
        self._lock = threading.Lock()
        # tid -> [(lock, acquisition site)] in acquisition order: the "at:"
        # of each held lock in reports (lockdep's held_lock.acquire_ip).
        self._sites: dict[int, list[tuple[Any, _stacks.Stack]]] = {}
        self._reported: set[Any] = set()
        # Names given to ksync.track(), for "held lock freed" reports.
        self._names: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.rt: Any = None
        self._save_stacks = True      # Runtime(stacks=...), read at attach

    def attach(self, rt: Any) -> None:
        self.rt = rt
        self._save_stacks = rt.stacks

    def finish(self) -> None:
        pass

    def on_event(self, t: Any, kind: str, obj: Any, arg: Any) -> None:
        self.handler(kind)(t, kind, obj, arg)

    def handler(self, kind: str) -> Any:
        if kind is _ACQUIRE:
            return self._acquire
        if kind is _RELEASE:
            return self._release
        if kind is _FREE:
            return self._free
        if kind is _ALLOC:
            return self._alloc
        return self._ignore

    def _ignore(self, t: Any, kind: str, obj: Any, arg: Any) -> None:
        pass

    def _release(self, t: Any, _kind: str, lock: Any, _mode: Any) -> None:
        sites = self._sites.get(t.tid)
        if sites:
            for i in range(len(sites) - 1, -1, -1):
                if sites[i][0] is lock:
                    del sites[i]
                    break

    def _alloc(self, _t: Any, _kind: str, obj: Any, name: Any) -> None:
        if isinstance(name, str):
            try:
                self._names[obj] = name
            except TypeError:
                pass        # neither hashable nor weakly referable: printed by type

    # ------------------------------------------------------------------ acquire
    def _acquire(self, t: Any, _kind: str, lock: Any, mode: str) -> None:
        held = t.held
        n = len(held)
        if lock is RCU_LOCK_MAP and n and held[n - 1][0] is lock:
            n -= 1      # rcu_read_lock() notes itself held before the event
        # Skip as few frames as any dispatch path has (the walk passes ksync's).
        site = _stacks.capture_site(2) if self._save_stacks else _stacks.NOT_RECORDED
        sites = self._sites.get(t.tid)
        if sites is None:
            sites = self._sites[t.tid] = []
        elif len(sites) > n + 4:
            # Waits unwound by an aborted run leave sites with no held lock.
            live = {id(h[0]) for h in held}
            sites[:] = [s for s in sites if id(s[0]) in live]
        sites.append((lock, site))
        if not n or _is_trylock(t, lock, mode, held, n):
            return
        key = class_key(lock)
        recursive = mode is _RREAD
        keys = []
        for i in range(n):
            h, hm = held[i]
            hk = class_key(h)
            if hk == key:
                if recursive and hm is not _WRITE:
                    return      # reader after reader, new one recursive: no new deps
                self._recursive(t, h, hm, lock, mode, key, n, site)
                return
            keys.append(hk)
        after = self.graph.after
        for i in range(n):
            hm = held[i][1]
            kind = dep_kind(hm, mode)
            d = after.get(keys[i])
            if d is not None and d.get(key, 0) & kind:
                continue
            self._new_dep(t, held, n, i, keys[i], lock, mode, key, kind, site)

    def _new_dep(self, t: Any, held: list, n: int, i: int, pkey: str, lock: Any,
                 mode: str, key: str, kind: int, site: _stacks.Stack) -> None:
        """First sighting of ``held[i] -> lock`` with this kind: record it and search."""
        prev, pmode = held[i]
        text = None
        with self._lock:
            g = self.graph
            if g.has(pkey, key, kind):
                return
            g.note_class(pkey, getattr(prev, "kind", "lock"))
            g.note_class(key, getattr(lock, "kind", "lock"))
            stack = _stacks.capture(1)
            new = Dep(pkey, key, kind, pmode, mode, t.name, t.tid, stack)
            g.add(new)
            path = g.strong_path(key, pkey, kind)
            if path is None:
                return
            cycle = _canonical([key, *(d.next for d in path)])
            if cycle in self._reported:
                return
            self._reported.add(cycle)
            sites = self._sites.get(t.tid)
            text = rep.circular(t, pkey, pmode, self._site_of(t, prev), key, mode, site,
                                path, new, held[:n], sites, stack)
            chain = [key, *(d.next for d in path)]
            deps = [d.to_dict() for d in (*path, new)]
        title = (f"possible circular locking dependency detected: {t.name} acquires {key} "
                 f"while holding {pkey}; chain {' -> '.join(chain)} -> {key}")
        self.rt.report("circular-locking-dependency", title, text, thread=t,
                       lock=key, mode=mode, held=[class_key(h) for h, _m in held[:n]],
                       chain=chain, dependencies=deps, stack=_stacks.render(stack))

    def _recursive(self, t: Any, h: Any, hm: str, lock: Any, mode: str, key: str, n: int,
                   site: _stacks.Stack) -> None:
        tag = ("recursive", key, hm, mode)
        with self._lock:
            if tag in self._reported:
                return
            self._reported.add(tag)
        stack = _stacks.capture(1)
        held = t.held[:n]
        text = rep.recursive(t, key, hm, self._site_of(t, h), mode, site, held,
                             self._sites.get(t.tid), stack)
        self.rt.report("recursive-locking",
                       f"possible recursive locking detected: {t.name} acquires {key} "
                       f"({mode}) while holding it ({hm})", text, thread=t,
                       lock=key, mode=mode, held_mode=hm,
                       held=[class_key(x) for x, _m in held], stack=_stacks.render(stack))

    def held_sites(self, t: Any) -> list[tuple[Any, _stacks.Stack]]:
        """``(lock, site)`` of the acquisitions ``t`` made that may still be held."""
        return list(self._sites.get(t.tid, ()))

    def _site_of(self, t: Any, lock: Any) -> _stacks.Stack | None:
        for lk, st in self._sites.get(t.tid, ()):
            if lk is lock:
                return st
        return None

    # ------------------------------------------------------------------ free
    def _free(self, t: Any, _kind: str, obj: Any, given: Any = None) -> None:
        """Kernel: debug_check_no_locks_freed() — here for every thread's held locks."""
        holders = []
        for th in list(self.rt.threads):
            for lk, mode in list(th.held):
                # Pseudo-locks are exempt: a work item may free itself while the
                # worker holds its map, as the kernel's workqueue allows.
                if lk is RCU_LOCK_MAP or isinstance(lk, LockMap):
                    continue
                holders.append((th, lk, mode))
        if not holders:
            return
        name = given if isinstance(given, str) else self._name_of(obj)
        inside = _contained(obj, name, {id(lk) for _th, lk, _m in holders})
        hits = [(th, lk, mode, inside[id(lk)]) for th, lk, mode in holders if id(lk) in inside]
        if not hits:
            return
        tag = ("freed", id(obj), tuple(id(h[1]) for h in hits))
        with self._lock:
            if tag in self._reported:
                return
            self._reported.add(tag)
        stack = _stacks.capture(1)
        text = rep.freed(t, name, hits, list(t.held), self._sites.get(t.tid), stack)
        self.rt.report("held-lock-freed",
                       f"held lock freed: {t.name} frees {name} while "
                       + ", ".join(f"{class_key(lk)} is held by {th.name}" for th, lk, _m, _w in hits),
                       text, thread=t, object=name,
                       locks=[class_key(lk) for _th, lk, _m, _w in hits],
                       holders=[th.name for th, _lk, _m, _w in hits], stack=_stacks.render(stack))

    def _name_of(self, obj: Any) -> str:
        try:
            name = self._names.get(obj)
        except TypeError:
            name = None
        return name if name is not None else ev.obj_name(obj)

    # ------------------------------------------------------------------ export
    def to_dot(self) -> str:
        """The dependency graph in Graphviz DOT (one edge per class pair, kinds as label)."""
        with self._lock:
            return self.graph.to_dot()

    def to_json(self, indent: int | None = 2) -> str:
        """The dependency graph as JSON: classes, dependencies, first-seen stacks."""
        with self._lock:
            return self.graph.to_json(indent)

    def dependencies(self) -> list[tuple[str, str, str]]:
        """``(from, to, kind)`` for every recorded dependency kind, in discovery order."""
        with self._lock:
            return [(a, b, KIND_NAMES[bit]) for (a, b, bit) in self.graph.first]


def _canonical(nodes: list[str]) -> tuple[str, ...]:
    """A cycle's node list rotated to start at its smallest class: one key per cycle."""
    i = nodes.index(min(nodes))
    return tuple(nodes[i:] + nodes[:i])


_SLOTS: dict[type, tuple[str, ...]] = {}


def _slot_names(cls: type) -> tuple[str, ...]:
    """The data slots of ``cls`` and its bases (cached: a run frees hundreds of objects)."""
    names = _SLOTS.get(cls)
    if names is None:
        out = []
        for c in cls.__mro__:
            slots = getattr(c, "__slots__", ()) or ()
            for slot in (slots,) if isinstance(slots, str) else slots:
                if slot not in ("__dict__", "__weakref__") and slot not in out:
                    out.append(slot)
        names = _SLOTS[cls] = tuple(out)
    return names


def _contained(obj: Any, name: str, wanted: set[int]) -> dict[int, str]:
    """id -> path, for the ids in ``wanted`` among ``obj`` and the objects in
    its fields, one level deep (and one level into list/tuple/dict fields):
    where a held lock may live.  The first path found for an id wins.

    Cost: C-speed scans of the containers; paths are formatted only for hits
    (a freed page table's 512-entry ``children`` list is one ``map(id)``).
    """
    out = {id(obj): name} if id(obj) in wanted else {}
    fields: list[tuple[str, Any]] = []
    d = getattr(obj, "__dict__", None)
    if isinstance(d, dict):
        fields.extend(d.items())
    for slot in _slot_names(type(obj)):
        try:
            fields.append((slot, getattr(obj, slot)))
        except AttributeError:
            pass
    for fname, v in fields:
        i = id(v)
        if i in wanted and i not in out:
            out[i] = f"{name}.{fname}"
        if isinstance(v, list | tuple):
            if not wanted.isdisjoint(map(id, v)):
                for j, x in enumerate(v):
                    if id(x) in wanted and id(x) not in out:
                        out[id(x)] = f"{name}.{fname}[{j}]"
        elif isinstance(v, dict):
            if not wanted.isdisjoint(map(id, v.values())):
                for k, x in v.items():
                    if id(x) in wanted and id(x) not in out:
                        out[id(x)] = f"{name}.{fname}[{k!r}]"
    return out
