"""Cheap stack capture for the checkers, rendered only when a report is filed.

Kernel counterpart: ``stack_trace_save()`` into a ``struct lock_trace`` —
lockdep and KASAN save raw return addresses when an event happens and
symbolise them only when they print.  Here a saved stack is a flat tuple
``(code, offset, code, offset, ...)`` of the frames outside ksync, innermost
first, where ``offset`` is the frame's ``f_lasti`` (the raw return address):
the line number is looked up in the code's line table only when the stack
is rendered, since ``f_lineno`` costs a scan of that table on every frame.
Building a stack costs about 0.2 µs per frame, whereas
``ksync.report.user_stack()`` formats strings at once (tens of µs).  Checkers
call :func:`capture` on hot paths and :func:`render` when they report.
"""

from __future__ import annotations

import sys
import threading
from types import CodeType
from typing import Any

from ksync.thread import thread_locals
from ksync.watch import KSYNC_DIR as _KSYNC_DIR  # frames from there are the machinery

#: Thread bootstrap frames (``Thread.run``/``_bootstrap``) say nothing about the caller.
_THREADING = threading.__file__

Stack = tuple  # (CodeType, f_lasti, CodeType, f_lasti, ...)

EMPTY: Stack = ()


class _NotRecorded(tuple):
    """The stack of an event seen while the runtime saved none (``Runtime(stacks=False)``)."""

    __slots__ = ()


#: What checkers store instead of a stack when stacks are off: empty, and
#: rendered as a pointer to the replay that shows it.
NOT_RECORDED: Stack = _NotRecorded()
_NOT_RECORDED_TEXT = "<stack not recorded (stacks off): replay the schedule to see it>"

#: Per-thread cache of ``capture_cached``: the managed thread's locals, emptied
#: when it ends, so an OS thread reused by a later run keeps no frame of this one.
_tls = thread_locals()


def capture(skip: int = 2, limit: int = 10) -> Stack:
    """Save the caller's stack outside ksync, innermost first, at most ``limit`` frames.

    ``skip`` counts frames above this function's caller to start from; ksync
    frames are dropped wherever they are, so the exact depth of the
    primitive that emitted the event does not matter.  Cost: O(depth).
    """
    try:
        f = sys._getframe(skip)
    except ValueError:
        return EMPTY
    return _walk(f, limit)


def _walk(f: Any, limit: int) -> Stack:
    out: list = []
    n = 0
    while f is not None and n < limit:
        co = f.f_code
        fn = co.co_filename
        if not fn.startswith(_KSYNC_DIR) and fn != _THREADING:
            out.append(co)
            out.append(f.f_lasti)
            n += 1
        f = f.f_back
    return tuple(out)


def capture_cached(skip: int = 2, limit: int = 10) -> Stack:
    """``capture(skip, limit)``, reusing the outer frames of this thread's last call.

    Accesses come in bursts from one function: its caller ``P`` stays the
    same live frame, suspended at the same instruction, so the frames above the
    innermost one are those saved last time.  Each thread keeps one entry
    ``(P, P's line, P's caller, saved tail)``; a hit costs the walk to the
    innermost frame instead of the whole stack.  Checking P's caller too
    keeps a generator resumed from elsewhere from reusing a stale tail.
    """
    f = _first_outside(skip)
    if f is None:
        return EMPTY
    head = (f.f_code, f.f_lasti)
    p = f.f_back
    if p is None or limit <= 1:
        return head
    c = getattr(_tls, "tail", None)
    if c is not None and c[0] is p and c[1] == p.f_lasti and c[2] is p.f_back:
        return head + c[3]
    tail = _walk(p, limit - 1)
    _tls.tail = (p, p.f_lasti, p.f_back, tail)
    return head + tail


def capture_site(skip: int = 2) -> Stack:
    """Only the innermost frame outside ksync (a held lock's ``at:`` site).

    The same result as ``capture(skip, 1)`` without building a list: lockdep
    calls it on every acquisition.
    """
    f = _first_outside(skip)
    return EMPTY if f is None else (f.f_code, f.f_lasti)


def _first_outside(skip: int) -> Any:
    """The innermost frame from the caller's ``skip`` levels up that is neither ksync's nor threading's."""
    try:
        f = sys._getframe(skip + 1)
    except ValueError:
        return None
    ksync_dir, threading_file = _KSYNC_DIR, _THREADING
    while f is not None:
        fn = f.f_code.co_filename
        if not fn.startswith(ksync_dir) and fn != threading_file:
            return f
        f = f.f_back
    return None


def frames(stack: Stack) -> list[tuple[str, int, str]]:
    """``(filename, lineno, function)`` per saved frame."""
    return [(stack[i].co_filename, line_of(stack[i], stack[i + 1]), stack[i].co_name)
            for i in range(0, len(stack), 2)]


def site_key(stack: Stack) -> tuple:
    """The innermost frame as ``(code, line)``: reports are told apart by source line."""
    return (stack[0], line_of(stack[0], stack[1])) if stack else ()


def line_of(code: CodeType, lasti: int) -> int:
    """The source line of byte offset ``lasti`` in ``code`` (what ``f_lineno`` says there)."""
    if lasti >= 0:
        for start, end, line in code.co_lines():
            if start <= lasti < end:
                return line if line is not None else code.co_firstlineno
    return code.co_firstlineno


def render(stack: Stack) -> list[str]:
    """``file:line function`` lines, the format of ``ksync.report.user_stack()``."""
    return [f"{fn}:{ln} {name}" for fn, ln, name in frames(stack)]


def top(stack: Stack) -> str:
    """The innermost frame as ``file:line function`` (``<unknown>`` if none)."""
    if stack is NOT_RECORDED:
        return "<stack not recorded>"
    lines = render(stack[:2])
    return lines[0] if lines else "<unknown>"


def top_function(stack: Stack) -> str:
    """The innermost frame's function name, KASAN's ``in <func>`` (``Class.method``
    for a method; the enclosing functions of a nested one are left out)."""
    return stack[0].co_qualname.rsplit(".<locals>.", 1)[-1] if stack else "<unknown>"


def numbered(stack: Stack, indent: str = "    ") -> str:
    """ThreadSanitizer's ``#0 func file:line`` lines."""
    out = [f"{indent}#{i} {name} {fn}:{ln}" for i, (fn, ln, name) in enumerate(frames(stack))]
    return "\n".join(out) if out else indent + _missing(stack)


def indented(stack: Stack, indent: str = "       ") -> str:
    """Kernel-style indented trace lines (lockdep and KASAN print them like this)."""
    out = [f"{indent}{line}" for line in render(stack)]
    return "\n".join(out) if out else indent + _missing(stack)


def _missing(stack: Stack) -> str:
    return _NOT_RECORDED_TEXT if stack is NOT_RECORDED else "<no frames outside ksync>"


def functions(stack: Stack) -> list[tuple[str, str, str]]:
    """``(name, qualname, filename)`` per frame, for suppression matching."""
    out = []
    for i in range(0, len(stack), 2):
        co: CodeType = stack[i]
        out.append((co.co_name, co.co_qualname, co.co_filename))
    return out


def held_locks(held: list, sites: list | None = None) -> list[str]:
    """Lines `` #i: (class){mode}, at: site`` for a thread's held locks.

    ``sites`` is lockdep's per-thread list of ``(lock, saved site)`` in
    acquisition order; each held entry takes the first unused site of the
    same lock.  Without it the ``at:`` part is omitted.
    """
    out = []
    free = list(sites) if sites else []
    for i, (lk, mode) in enumerate(held):
        at = ""
        for j, (slk, st) in enumerate(free):
            if slk is lk:
                at = f", at: {top(st)}"
                del free[j]
                break
        out.append(f" #{i}: ({class_name(lk)}){{{mode}}}{at}")
    return out


def class_name(lock: object) -> str:
    """A lock's lockdep class as printed: ``name`` or ``name/subclass``."""
    name = getattr(lock, "name", None) or repr(lock)
    sub = getattr(lock, "subclass", 0)
    return f"{name}/{sub}" if sub else name
