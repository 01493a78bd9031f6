"""Instrumented memory for a user's own state, and object lifetimes.

``Shared(name, initial)`` is a memory cell whose plain ``read``/``write`` are
events the race detector watches (kernel analogue: a plain access KCSAN
instruments).  ``track(obj, name)`` puts an object under use-after-free
watch, ``kfree(obj)`` frees (poisons) it, after which every attribute and
item access to it is seen (ksync.watch), and ``shared(obj, name)`` makes
every access to its data one the race detector checks.
``check_access(obj, what)`` is an explicit instrumented access, for models
that name a field that is not a Python attribute (KASAN's shadow check).
The use-after-free checker listens to the ALLOC, FREE and ACCESS events
these emit.
"""

from __future__ import annotations

from typing import Any, TypeVar

from . import events as ev
from .errors import KsyncError
from .thread import current_thread
from .watch import NAMES, Watched, apply_pending, needs_wrapper, share, watch_kind

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
    """Put ``obj`` under use-after-free watch (kernel: an allocation KASAN sees).

    Returns ``obj``, or for a built-in container (list, dict, bytearray, set,
    numpy array) a ``ksync.watch.Watched`` wrapper to use in its place: only
    accesses through the returned object are seen.  After ``kfree(obj)`` any
    attribute or item access to it is a use-after-free report.
    """
    if needs_wrapper(obj):
        obj = Watched(obj, name or type(obj).__name__)  # type: ignore[assignment]
    t = current_thread()
    if t.rt.listeners:
        t.rt.emit(t, ev.ALLOC, obj, name or type(obj).__name__)
    return obj


def shared(obj: T, name: str | None = None) -> T:
    """Track ``obj`` and make every read and write of its data a race-checked access.

    Kernel counterpart: memory KCSAN instruments (and KASAN, as ``track``).
    Each attribute (or item) read/write is a scheduling point and an access
    the happens-before race detector checks, as ``Shared.read``/``write`` are.
    Returns ``obj`` (its class swapped for a watching subclass of the same
    name) or, for a built-in container, a ``Watched`` wrapper to use instead.
    An object whose class cannot be swapped (a C type) is a KsyncError.
    """
    obj = track(obj, name)
    if name:
        # Held for the run (the runtime's lifetime): reports name the object.
        current_thread().rt.service(NAMES, dict)[id(obj)] = (obj, name)
    if not share(obj):
        if watch_kind(obj) == "shared":
            return obj
        raise KsyncError(
            f"ksync.shared({name or type(obj).__name__!r}): objects of type "
            f"{type(obj).__qualname__} cannot be watched (an immutable or C-level class); "
            "keep the value in a ksync.Shared cell or an attribute of a plain object")
    return obj


def kfree(obj: Any, name: str | None = None) -> None:
    """Free ``obj``: later accesses, a second ``kfree``, or freeing the untracked are reports.

    Kernel counterpart: kfree() with KASAN, which poisons the object (the
    use-after-free checker swaps its class, see ksync.watch) after recording
    the freeing stack.
    """
    t = current_thread()
    rt = t.rt
    rt.point(t)
    if rt.listeners:
        rt.emit(t, ev.FREE, obj, name)
        apply_pending()


def check_access(obj: Any, what: str = "access", write: bool = False) -> None:
    """An instrumented access to a tracked object (``what`` names the field)."""
    t = current_thread()
    rt = t.rt
    if rt.listeners:
        rt.emit(t, ev.ACCESS, obj, ("write" if write else "read", what))
