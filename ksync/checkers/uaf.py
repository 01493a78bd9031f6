"""Use-after-free and double-free detection for tracked objects.

Kernel counterpart: KASAN (mm/kasan/): allocations are recorded with their
stack; ``kfree`` poisons the object and records the free stack; an access to
poisoned memory is "BUG: KASAN: use-after-free", a second free
"BUG: KASAN: double-free".  Freed objects stay in a quarantine (a FIFO of
``QUARANTINE`` entries holding a reference), so Python cannot reuse their
``id()`` for a new object while they are watched — as KASAN delays reuse of
freed memory so a late access still lands on poison.

Watched objects: anything passed to ``ksync.track`` or ``ksync.shared``
(ALLOC); ``ksync.Shared`` cells also count as allocated memory, so ``kfree``
of one poisons it and a later ``read``/``write`` is a use-after-free.
``kfree`` of an object never tracked is "BUG: KASAN: invalid-free"
(kasan_report_invalid_free): the free was of memory the allocator does not
know.  Accesses are ACCESS events (``check_access``, and every attribute or
item access to a freed object, whose class ``kfree`` swapped for a poisoned
one: see ksync.watch), READ/WRITE of a Shared, and atomic/refcount/lock
operations on a freed object.  An object leaving quarantine, allocated
again, or still freed when the run ends gets its own class back.

Cost: one dict probe per event while something is in quarantine; stacks are
saved (not formatted) at track and free time; a live tracked object is not
touched, so reading it costs what reading any object does.
"""

from __future__ import annotations

import threading
from typing import Any

from .. import events as ev
from .. import watch
from ..memory import Shared
from . import _stacks

_ALLOC, _FREE, _ACCESS = ev.ALLOC, ev.FREE, ev.ACCESS
_WATCH = frozenset((ev.ACCESS, ev.READ, ev.WRITE, ev.ATOMIC, ev.REFCOUNT, ev.ACQUIRE))
#: Freed objects kept poisoned (and referenced) before the oldest is forgotten.
QUARANTINE = 1 << 16


class _Obj:
    __slots__ = ("obj", "name", "tid", "thread", "stack", "ftid", "fthread", "fstack")

    def __init__(self, obj: Any, name: str, t: Any, stack: _stacks.Stack) -> None:
        self.obj = obj
        self.name = name
        self.tid = t.tid if t is not None else -1
        self.thread = t.name if t is not None else ""
        self.stack = stack
        self.ftid = -1
        self.fthread = ""
        self.fstack: _stacks.Stack = _stacks.EMPTY


class UseAfterFree(ev.Checker):
    """The ``uaf`` checker.  ``live``/``quarantine`` counts are for tests and stats."""

    name = "uaf"
    #: The event kinds on_event acts on (the runtime tells it no others).
    kinds = _WATCH | {_ALLOC, _FREE}

    def __init__(self) -> None:
        self._live: dict[int, _Obj] = {}
        self._freed: dict[int, _Obj] = {}     # insertion order = quarantine FIFO
        self._lk = threading.Lock()
        self._reported: set[Any] = set()
        self.rt: Any = None
        self._save_stacks = True      # Runtime(stacks=...), read at attach

    @property
    def live(self) -> int:
        return len(self._live)

    @property
    def quarantine(self) -> int:
        return len(self._freed)

    def on_event(self, t: Any, kind: str, obj: Any, arg: Any) -> None:
        self.handler(kind)(t, kind, obj, arg)

    def handler(self, kind: str) -> Any:
        if kind in _WATCH:
            return self._watched
        if kind is _ALLOC:
            return self._alloc
        if kind is _FREE:
            return self._free
        return self._ignore

    def _ignore(self, t: Any, kind: str, obj: Any, arg: Any) -> None:
        pass

    def _watched(self, t: Any, kind: str, obj: Any, arg: Any) -> None:
        if self._freed:
            e = self._freed.get(id(obj))
            if e is not None and e.obj is obj:
                self._use(t, kind, arg, e)

    def attach(self, rt: Any) -> None:
        self.rt = rt
        self._save_stacks = rt.stacks

    def finish(self) -> None:
        # After the run nothing reports: give every freed object its class back.
        with self._lk:
            freed = list(self._freed.values())
        for e in freed:
            watch.unpoison(e.obj)

    def _alloc(self, t: Any, _kind: str, obj: Any, name: Any) -> None:
        # Skip as few frames as any dispatch path has (the walk passes ksync's).
        stack = _stacks.capture(3) if self._save_stacks else _stacks.NOT_RECORDED
        e = _Obj(obj, name or ev.obj_name(obj), t, stack)
        with self._lk:
            old = self._freed.get(id(obj))
            if old is not None and old.obj is obj:
                del self._freed[id(obj)]       # the same object, allocated again
                watch.unpoison(obj)
            self._live[id(obj)] = e

    def _free(self, t: Any, _kind: str, obj: Any, name: Any) -> None:
        stack = _stacks.capture(3) if self._save_stacks else _stacks.NOT_RECORDED
        i = id(obj)
        with self._lk:
            old = self._freed.get(i)
            invalid = False
            if old is not None and old.obj is obj:
                double = old
            else:
                double = None
                e = self._live.pop(i, None)
                if e is None and isinstance(obj, Shared):
                    e = _Obj(obj, obj.name, None, _stacks.EMPTY)
                if e is None:
                    invalid = True
                else:
                    e.ftid, e.fthread, e.fstack = t.tid, t.name, stack
                    self._freed[i] = e
                    watch.poison_after_free(obj)
                    if len(self._freed) > QUARANTINE:
                        gone = self._freed.pop(next(iter(self._freed)))
                        watch.unpoison(gone.obj)
        if double is not None:
            self._double(t, double, stack)
        elif invalid:
            self._invalid(t, obj, name, stack)

    # ------------------------------------------------------------------ reports
    def _first(self, tag: Any) -> bool:
        """True the first time ``tag`` is seen: one report per bug, not per access."""
        with self._lk:
            if tag in self._reported:
                return False
            self._reported.add(tag)
            return True

    def _use(self, t: Any, kind: str, arg: Any, e: _Obj) -> None:
        # One report per freed object and accessing thread (KASAN reports the
        # first bad access only): the reads that follow it are the same bug.
        if not self._first((id(e.obj), t.tid)):
            return
        stack = _stacks.capture(3)
        op, where = _describe(kind, arg, e.name)
        func = _stacks.top_function(stack)
        text = _kasan_text(f"use-after-free in {func}",
                           f"{op} at addr {where} by task {t.name}/{t.tid}", stack,
                           [*_history(e), f"The buggy address belongs to the object {e.name} "
                            f"(type {watch.type_name(e.obj)}), freed."])
        self.rt.report("use-after-free",
                       f"use-after-free in {func}: {op.lower()} at {where} by {t.name} "
                       f"(freed by {e.fthread} at {_stacks.top(e.fstack)})",
                       text, thread=t, object=e.name, access=op, address=where,
                       stack=_stacks.render(stack), alloc_stack=_stacks.render(e.stack),
                       free_stack=_stacks.render(e.fstack), alloc_thread=e.thread,
                       free_thread=e.fthread)

    def _double(self, t: Any, e: _Obj, stack: _stacks.Stack) -> None:
        if not self._first(("double", id(e.obj), _stacks.site_key(stack))):
            return
        func = _stacks.top_function(stack)
        text = _kasan_text(f"double-free in {func}",
                           f"Free of addr {e.name} by task {t.name}/{t.tid}", stack,
                           [*_history(e), f"The buggy address belongs to the object {e.name} "
                            f"(type {watch.type_name(e.obj)}), already freed."])
        self.rt.report("double-free",
                       f"double-free in {func}: {e.name} freed again by {t.name} "
                       f"(first freed by {e.fthread} at {_stacks.top(e.fstack)})",
                       text, thread=t, object=e.name, stack=_stacks.render(stack),
                       alloc_stack=_stacks.render(e.stack), free_stack=_stacks.render(e.fstack),
                       alloc_thread=e.thread, free_thread=e.fthread)

    def _invalid(self, t: Any, obj: Any, name: Any, stack: _stacks.Stack) -> None:
        if not self._first(("invalid", _stacks.site_key(stack))):
            return
        func = _stacks.top_function(stack)
        what = name or ev.obj_name(obj)
        kind = watch.type_name(obj)
        text = _kasan_text(f"invalid-free in {func}",
                           f"Free of addr {what} by task {t.name}/{t.tid}", stack,
                           [f"The object {what} (type {kind}) was never allocated under "
                            "watch: pass it to ksync.track() (or ksync.shared()) when it is "
                            "created, or do not free it."])
        self.rt.report("invalid-free",
                       f"invalid-free in {func}: {what} ({kind}) freed by {t.name} but never "
                       "tracked", text, thread=t, object=what, stack=_stacks.render(stack))


def _kasan_text(bug: str, access: str, stack: _stacks.Stack, body: list[str]) -> str:
    """A KASAN splat: the bug line, the access, its call trace, then ``body``."""
    return "\n".join(["=" * 66, f"BUG: KASAN: {bug}", access, "",
                      "Call Trace:", _stacks.indented(stack, " "), "", *body, "=" * 66])


def _history(e: _Obj) -> list[str]:
    if e.tid >= 0:
        alloc = [f"Allocated by task {e.thread}/{e.tid}:", _stacks.indented(e.stack, " "), ""]
    else:
        alloc = ["Allocated by task ?: (ksync.Shared cell, never passed to ksync.track)", ""]
    return [*alloc, f"Freed by task {e.fthread}/{e.ftid}:", _stacks.indented(e.fstack, " "), ""]


def _describe(kind: str, arg: Any, name: str) -> tuple[str, str]:
    """(``Read of size 8``, address) for an event touching a freed object."""
    if kind is _ACCESS:
        rw, field = arg if isinstance(arg, tuple) else ("read", arg)
        op = "Write" if "write" in rw else "Read"
        sep = "" if isinstance(field, str) and field.startswith("[") else "."
        return f"{op} of size 8", f"{name}{sep}{field}"
    if kind is ev.READ:
        return "Read of size 8", name
    if kind is ev.WRITE:
        return "Write of size 8", name
    if kind is ev.ACQUIRE:
        return "Write of size 4", f"{name} (lock acquired)"
    op = arg[0] if isinstance(arg, tuple) and arg else "op"
    return "Write of size 4", f"{name} ({kind} {op})"
