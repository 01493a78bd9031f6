"""Instrumented memory for a user's own state, and object lifetimes.

``Shared(name, initial)`` is a memory cell whose plain ``read``/``write`` are
events the race detector watches (kernel analogue: a plain access KCSAN
instruments).  ``track(obj, name)`` puts an object under use-after-free
watch, ``kfree(obj)`` frees (poisons) it, and ``check_access(obj, what)`` is
the instrumented access a model makes before touching a tracked object
(KASAN's shadow check).  The use-after-free checker listens to the ALLOC,
FREE and ACCESS events these emit.
"""

from __future__ import annotations

from typing import Any, TypeVar

from . import events as ev
from .errors import KsyncError
from .thread import current_thread

T = TypeVar("T")


class Shared:
    """A plain (non-atomic) memory cell: ``read()``, ``write(v)``."""

    __slots__ = ("name", "_v", "__weakref__")

    def __init__(self, name: str, initial: Any = None) -> None:
        if not isinstance(name, str) or not name:
            raise KsyncError(f"Shared(name={name!r}): give the cell a name for reports")
        self.name = name
        self._v = initial

    def read(self) -> Any:
        t = current_thread()
        rt = t.rt
        rt.point(t)
        v = self._v
        if rt.listeners:
            rt.emit(t, ev.READ, self, None)
        return v

    def write(self, value: Any) -> None:
        t = current_thread()
        rt = t.rt
        rt.point(t)
        self._v = value
        if rt.listeners:
            rt.emit(t, ev.WRITE, self, None)

    def peek(self) -> Any:
        """The value without an event (for assertions after a run)."""
        return self._v

    def __repr__(self) -> str:
        return f"<Shared {self.name}={self._v!r}>"


def track(obj: T, name: str | None = None) -> T:
    """Put ``obj`` under use-after-free watch (kernel: an allocation KASAN sees)."""
    t = current_thread()
    if t.rt.listeners:
        t.rt.emit(t, ev.ALLOC, obj, name or type(obj).__name__)
    return obj


def kfree(obj: Any, name: str | None = None) -> None:
    """Free ``obj``: any later ``check_access`` or a second ``kfree`` is a report."""
    t = current_thread()
    rt = t.rt
    rt.point(t)
    if rt.listeners:
        rt.emit(t, ev.FREE, obj, name)


def check_access(obj: Any, what: str = "access", write: bool = False) -> None:
    """An instrumented access to a tracked object (``what`` names the field)."""
    t = current_thread()
    rt = t.rt
    if rt.listeners:
        rt.emit(t, ev.ACCESS, obj, ("write" if write else "read", what))
