"""refcount_t: a reference count that saturates instead of wrapping.

Kernel counterpart: include/linux/refcount.h and lib/refcount.c.  An
increment from zero warns "addition on 0; use-after-free"; a decrement
below zero warns "underflow; use-after-free"; an overflow past INT_MAX
saturates the count ("saturated; leaking memory") and it stays saturated,
so the object is leaked rather than freed early.  Each warning is a
``refcount`` report, filed when the ``refcount`` checker is on — once per
object: after the first warning the count is saturated and what follows is
its consequence, not a new bug.
"""

from __future__ import annotations

from . import events as ev
from .errors import KsyncError
from .report import call_site, format_stack, user_stack
from .thread import KThread, current_thread

INT_MAX = 0x7FFF_FFFF
#: Kernel: REFCOUNT_SATURATED (INT_MIN / 2), far from both zero and INT_MAX.
REFCOUNT_SATURATED = -(1 << 30)

_WARN = {
    "add-uaf": "addition on 0; use-after-free",
    "add-ovf": "saturated; leaking memory",
    "sub-uaf": "underflow; use-after-free",
    "dec-leak": "decrement hit 0; leaking memory",
}


class Refcount:
    """A refcount_t named after the field it models (``root->tdp_mmu_root_count``)."""

    __slots__ = ("name", "_v", "_warned", "__weakref__")
    _warned: bool

    def __init__(self, value: int = 1, name: str = "refcount") -> None:
        if not isinstance(name, str) or not name:
            raise KsyncError(f"Refcount(name={name!r}) at {call_site()}: give the count a "
                             "name for reports, e.g. 'root->tdp_mmu_root_count'")
        _check_count(f"Refcount({value!r}, name={name!r})", value)
        self.name = name
        self._v = value
        self._warned = False

    def _op(self, op: str, delta: int, not_zero: bool = False) -> tuple[int, int, str | None]:
        """Apply ``delta`` under ``rt.big``; returns (old, new, warning)."""
        t = current_thread()
        rt = t.rt
        rt.point(t)
        warn = None
        with rt.big:
            old = self._v
            if not_zero and old == 0:
                new = 0
            elif old < 0:
                # Saturated (or corrupted): never move again, so it can't reach zero.
                new = REFCOUNT_SATURATED
                warn = "add-ovf" if delta > 0 else "sub-uaf"
            elif delta > 0 and old == 0:
                new = REFCOUNT_SATURATED
                warn = "add-uaf"
            elif old + delta > INT_MAX:
                new = REFCOUNT_SATURATED
                warn = "add-ovf"
            elif old + delta < 0:
                new = REFCOUNT_SATURATED
                warn = "sub-uaf"
            else:
                new = old + delta
            self._v = new
            # Under ``big``: the race detector takes happens-before from the
            # order of refcount ops, so events must arrive in that order.
            if rt.listeners:
                rt.emit(t, ev.REFCOUNT, self, (op, old, new))
        if warn is not None:
            self._warn(t, warn, op)
        return old, new, warn

    def _warn(self, t: KThread, warn: str, op: str) -> None:
        rt = t.rt
        if "refcount" not in rt.checks or self._warned:
            return
        self._warned = True
        site = call_site()
        stack = user_stack()
        rt.report("refcount", f"refcount_t {self.name}: {_WARN[warn]} ({op} at {site})",
                  f"------------[ cut here ]------------\n"
                  f"refcount_t: {_WARN[warn]}.\n"
                  f"WARNING: {t.name}/{t.tid} in {op} of {self.name} at {site}\n"
                  f"stack:\n{format_stack(stack)}\n"
                  f"---[ end trace ]---",
                  thread=t, object=self.name, warning=_WARN[warn], op=op, site=site,
                  stack=stack)

    def set(self, n: int) -> None:
        """Kernel: refcount_set()."""
        _check_count(f"{self.name}.set({n!r})", n)
        t = current_thread()
        rt = t.rt
        with rt.big:
            self._v = n
            if rt.listeners:
                rt.emit(t, ev.REFCOUNT, self, ("set", n, n))

    def read(self) -> int:
        """Kernel: refcount_read()."""
        t = current_thread()
        rt = t.rt
        rt.point(t)
        with rt.big:
            v = self._v
            if rt.listeners:
                rt.emit(t, ev.REFCOUNT, self, ("read", v, v))
        return v

    def peek(self) -> int:
        """The count without an event or a scheduling point (for reports and tests)."""
        return self._v

    def inc(self) -> None:
        """Kernel: refcount_inc() — warns on addition to 0."""
        self._op("inc", 1)

    def add(self, i: int) -> None:
        """Kernel: refcount_add()."""
        _check_count(f"{self.name}.add({i!r})", i)
        self._op("add", i)

    def inc_not_zero(self) -> bool:
        """Kernel: refcount_inc_not_zero() — False (and no change) if the count is 0."""
        old, _new, _w = self._op("inc_not_zero", 1, not_zero=True)
        return old != 0

    def dec_and_test(self) -> bool:
        """Kernel: refcount_dec_and_test() — True when this dropped the last reference."""
        old, new, _w = self._op("dec_and_test", -1)
        return old == 1 and new == 0

    def sub_and_test(self, i: int) -> bool:
        """Kernel: refcount_sub_and_test()."""
        _check_count(f"{self.name}.sub_and_test({i!r})", i)
        old, new, _w = self._op("sub_and_test", -i)
        return old == i and new == 0

    def dec(self) -> None:
        """Kernel: refcount_dec() — dropping the last reference this way leaks; warns."""
        t = current_thread()
        old, new, warn = self._op("dec", -1)
        if warn is None and old == 1 and new == 0:
            self._warn(t, "dec-leak", "dec")

    def __repr__(self) -> str:
        return f"<Refcount {self.name}={self._v}>"


def _check_count(what: str, n: object) -> None:
    """Bad input is an error naming the call, never a TypeError from deep inside."""
    if type(n) is not int or not 0 <= n <= INT_MAX:
        raise KsyncError(f"{what} at {call_site()}: a count is an int in [0, {INT_MAX}]")
