"""atomic_t: a sequentially consistent integer.

Kernel counterpart: ``atomic_read``, ``atomic_set``, ``atomic_cmpxchg``,
``atomic_xchg``, ``atomic_add_return``, ``atomic_fetch_add`` and friends.
Every operation is one scheduling point and one ``atomic`` event, which the
race detector treats as a synchronising access (atomic vs atomic is never a
race).  Cost: one ``rt.big`` round trip.
"""

from __future__ import annotations

from . import events as ev
from .thread import current_thread


class Atomic:
    """An atomic integer (or any value for ``xchg``/``cmpxchg``)."""

    __slots__ = ("name", "_v", "__weakref__")

    def __init__(self, value: int = 0, name: str = "atomic") -> None:
        self.name = name
        self._v = value

    def _rmw(self, op: str, fn: object, arg: object = None) -> tuple[int, int]:
        t = current_thread()
        rt = t.rt
        rt.point(t)
        with rt.big:
            old = self._v
            new = fn(old, arg)  # type: ignore[operator]
            self._v = new
            # Emitted under ``big`` so checkers see atomic ops in their real order.
            if rt.listeners:
                rt.emit(t, ev.ATOMIC, self, (op, old, new))
        return old, new

    def read(self) -> int:
        """Kernel: atomic_read()."""
        return self._rmw("read", _keep)[0]

    def set(self, value: int) -> None:
        """Kernel: atomic_set()."""
        self._rmw("set", _put, value)

    def xchg(self, value: int) -> int:
        """Kernel: atomic_xchg() — store ``value``, return the old value."""
        return self._rmw("xchg", _put, value)[0]

    def cmpxchg(self, old: int, new: int) -> int:
        """Kernel: atomic_cmpxchg() — store ``new`` if the value is ``old``; return the value seen."""
        return self._rmw("cmpxchg", _cas, (old, new))[0]

    def try_cmpxchg(self, old: int, new: int) -> bool:
        """Kernel: atomic_try_cmpxchg() — True if the exchange happened."""
        return self.cmpxchg(old, new) == old

    def add_return(self, i: int) -> int:
        """Kernel: atomic_add_return()."""
        return self._rmw("add", _add, i)[1]

    def fetch_add(self, i: int) -> int:
        """Kernel: atomic_fetch_add()."""
        return self._rmw("add", _add, i)[0]

    def sub_return(self, i: int) -> int:
        return self._rmw("add", _add, -i)[1]

    def inc(self) -> None:
        self._rmw("add", _add, 1)

    def dec(self) -> None:
        self._rmw("add", _add, -1)

    def inc_return(self) -> int:
        return self.add_return(1)

    def dec_return(self) -> int:
        return self.add_return(-1)

    def dec_and_test(self) -> bool:
        return self.add_return(-1) == 0

    def peek(self) -> int:
        """The value without an event or a scheduling point (for reports and tests)."""
        return self._v

    def __repr__(self) -> str:
        return f"<Atomic {self.name}={self._v!r}>"


def _keep(old: int, _arg: object) -> int:
    return old


def _put(_old: int, arg: int) -> int:
    return arg


def _cas(old: int, arg: tuple[int, int]) -> int:
    return arg[1] if old == arg[0] else old


def _add(old: int, arg: int) -> int:
    return old + arg
