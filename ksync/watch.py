"""Every load and store of a watched plain object, without hand instrumentation.

Kernel counterpart: the compiler pass behind KASAN and KCSAN
(``-fsanitize=kernel-address`` / ``-fsanitize=thread``), which puts a check
before every load and store.  Python has no such pass, so a watched object's
class is swapped for a generated subclass whose attribute hooks make the
check, then do the access through the original class:

* **poisoned** (``poison``, done by the use-after-free checker at ``kfree``):
  every attribute read, write and delete, item access, ``len``/``iter``/``in``
  is an ACCESS event.  The access still happens afterwards, as KASAN reports
  and lets the load go on.  A live tracked object keeps its own class, so
  ``track`` costs nothing until the object is freed.
* **shared** (``share``, from ``ksync.shared``): every read and write of
  instance data (``__dict__`` entries and ``__slots__``, not methods or other
  class attributes) is a scheduling point and an ACCESS event for the race
  detector, as ``ksync.Shared.read``/``write`` are.

Objects whose class cannot be swapped (``list``, ``dict``, ``bytearray``,
``set``, numpy arrays: built-in types) are watched through a ``Watched``
wrapper, which ``track``/``shared`` return; immutable built-ins (int, str,
tuple) cannot be freed and written, and stay unwatched.

Accesses made by ksync itself (the checkers, the trace recorder, report
formatting) are not instrumented, as mm/kasan/ is built without KASAN.
The generated classes keep the original's name, so reports and ``repr`` read
as before; ``real_type`` gives the original class.
"""

from __future__ import annotations

import os
import sys
import threading
from types import MemberDescriptorType
from typing import Any

from . import events as ev
from .thread import thread_locals

#: Code under this directory (ksync/) is the machinery: never checked here,
#: and left out of the stacks checkers save (checkers/_stacks.py).
KSYNC_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_HEAPTYPE = 1 << 9          # Py_TPFLAGS_HEAPTYPE: __class__ may be assigned
_IMMUTABLETYPE = 1 << 8     # Py_TPFLAGS_IMMUTABLETYPE: it may not
_ITEM_OPS = (("__getitem__", "read"), ("__setitem__", "write"), ("__delitem__", "write"))
_READ_OPS = ("__len__", "__iter__", "__contains__")
#: Names never reported: reading them does not touch the object's memory.
_EXEMPT = frozenset(("__class__",))

#: Container methods that change the contents (the rest only read them).
_MUTATORS = frozenset((
    "append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse", "update",
    "setdefault", "popitem", "add", "discard", "difference_update", "intersection_update",
    "symmetric_difference_update", "fill", "put", "resize", "itemset", "__iadd__", "__imul__",
))

#: Runtime service key: id(obj) -> (obj, name) for objects given to ksync.shared.
NAMES = "ksync.watch.names"

_lock = threading.Lock()
_pending = threading.local()
_quiet = threading.local()    # kasan_disabled() depth, per OS thread
_thread_tls = thread_locals()  # .t: the managed thread this OS thread carries
_poisoned: dict[type, type] = {}
_shared: dict[type, type] = {}


def real_type(obj: Any) -> type:
    """The class ``obj`` had before it was watched (``type(obj)`` otherwise)."""
    cls = type(obj)
    while "_ksync_parent" in cls.__dict__:
        cls = cls.__dict__["_ksync_parent"]
    return cls


def type_name(obj: Any) -> str:
    """The user's name for ``obj``'s type, for reports (a wrapper names its container's)."""
    if isinstance(obj, Watched):
        return f"{type(obj._ksync_target).__qualname__}, via ksync.Watched"
    return real_type(obj).__qualname__


def watch_kind(obj: Any) -> str | None:
    """``"poisoned"``, ``"shared"`` or None: how ``obj`` is watched now."""
    return type(obj).__dict__.get("_ksync_kind")


def swappable(obj: Any) -> bool:
    """Whether ``obj``'s class can be swapped for a watching subclass."""
    flags = type(obj).__flags__
    return bool(flags & _HEAPTYPE) and not flags & _IMMUTABLETYPE


def needs_wrapper(obj: Any) -> bool:
    """A mutable built-in container, which only a ``Watched`` wrapper can watch."""
    if swappable(obj):
        return False
    return isinstance(obj, list | dict | bytearray | set) or hasattr(obj, "__array_interface__")


def poison(obj: Any) -> bool:
    """Swap ``obj`` to its poisoned class; False if it cannot be (or already is)."""
    if not swappable(obj) or watch_kind(obj) == "poisoned":
        return False
    return _swap(obj, _poisoned, _make_poisoned)


def poison_after_free(obj: Any) -> None:
    """Poison ``obj`` once the FREE event has reached every listener (see ``kfree``).

    The use-after-free checker calls this from its FREE handler; listeners
    after it (the trace recorder probing the object's last state) must still
    see the object as it was.
    """
    pending = _pending.__dict__.setdefault("objs", [])
    pending.append(obj)


def apply_pending() -> None:
    """Poison what this thread's last ``kfree`` asked for."""
    pending = _pending.__dict__.get("objs")
    while pending:
        poison(pending.pop())


def unpoison(obj: Any) -> None:
    """Undo ``poison`` (reallocated, out of quarantine, or the run ended)."""
    cls = type(obj)
    if cls.__dict__.get("_ksync_kind") == "poisoned":
        object.__setattr__(obj, "__class__", cls.__dict__["_ksync_parent"])


def share(obj: Any) -> bool:
    """Swap ``obj`` to its race-watched class; False if it cannot be (or already is)."""
    if not swappable(obj) or watch_kind(obj) is not None:
        return False
    return _swap(obj, _shared, _make_shared)


def _swap(obj: Any, cache: dict[type, type], make: Any) -> bool:
    base = type(obj)
    cls = cache.get(base)
    if cls is None:
        with _lock:
            cls = cache.get(base)
            if cls is None:
                try:
                    cls = make(base)
                except TypeError:
                    # A class that refuses subclasses (a final C type, an Enum
                    # with members): it stays unwatched, as documented.
                    return False
                cache[base] = cls
    try:
        object.__setattr__(obj, "__class__", cls)
    except TypeError:
        return False    # a layout __class__ assignment refuses: unwatched
    return True


def _managed() -> Any:
    """The managed thread of the caller if its runtime listens, else None."""
    try:
        t = _thread_tls.t
    except AttributeError:
        return None
    return t if t.rt.listeners else None


def _from_ksync(depth: int) -> bool:
    try:
        return sys._getframe(depth).f_code.co_filename.startswith(KSYNC_DIR)
    except ValueError:
        return True


def _subclass(base: type, ns: dict[str, Any], kind: str) -> type:
    # Same name, no new slots: the layout is the base's, so __class__ may be
    # assigned back and forth, and reports and repr name the user's class.
    ns.update({"__slots__": (), "_ksync_parent": base, "_ksync_kind": kind,
               "__qualname__": base.__qualname__, "__module__": base.__module__,
               "__doc__": base.__doc__})
    return type(base)(base.__name__, (base,), ns)


def _c_level(base: type, meth: str) -> bool:
    """``meth`` exists and is not Python code (whose own field accesses are seen)."""
    fn = getattr(base, meth, None)
    return fn is not None and not hasattr(fn, "__code__")


# ---------------------------------------------------------------- poisoned class
class kasan_disabled:  # noqa: N801  (used as a context manager, like a function)
    """``with ksync.kasan_disabled(): ...``: this thread's reads of freed objects are not checked.

    Kernel counterpart: kasan_disable_current()/kasan_enable_current(), a
    per-task depth.  For post-mortem inspection (a test or harness reading
    the counters of a torn-down VM); explicit ``check_access`` calls and
    ksync primitives are still checked.
    """

    def __enter__(self) -> kasan_disabled:
        _quiet.depth = getattr(_quiet, "depth", 0) + 1
        return self

    def __exit__(self, *exc: Any) -> None:
        _quiet.depth -= 1


def _poison_hit(obj: Any, what: str, op: str) -> None:
    """One access to a freed object: an ACCESS event the uaf checker reports."""
    if _from_ksync(3) or getattr(_quiet, "depth", 0):
        return
    t = _managed()
    if t is not None:
        t.rt.emit(t, ev.ACCESS, obj, (op, what))


def _class_attrs(base: type) -> frozenset[str]:
    """Names of methods, properties and other descriptors (not slots) of ``base``.

    Naming one reads the class, not the instance; what the method or
    property then reads of the instance is seen when it runs.
    """
    return frozenset(k for c in base.__mro__ for k, v in vars(c).items()
                     if hasattr(type(v), "__get__") and not isinstance(v, MemberDescriptorType))


def _make_poisoned(base: type) -> type:
    ga, sa, da = base.__getattribute__, base.__setattr__, base.__delattr__
    wrapper = issubclass(base, Watched)
    # vars(obj) / obj.__dict__ reads the instance, though a descriptor serves it.
    klass = (_class_attrs(base) | _EXEMPT) - {"__dict__"}

    def __getattribute__(self: Any, name: str) -> Any:
        if name not in klass:
            _poison_hit(self, name, "write" if wrapper and name in _MUTATORS else "read")
        return ga(self, name)

    def __setattr__(self: Any, name: str, value: Any) -> None:
        _poison_hit(self, name, "write")
        sa(self, name, value)

    def __delattr__(self: Any, name: str) -> None:
        _poison_hit(self, name, "write")
        da(self, name)

    ns: dict[str, Any] = {"__getattribute__": __getattribute__, "__setattr__": __setattr__,
                          "__delattr__": __delattr__}
    for meth, op in _ITEM_OPS:
        if hasattr(base, meth):
            ns[meth] = _poison_item(getattr(base, meth), op)
    for meth in _READ_OPS:
        if wrapper or _c_level(base, meth):
            ns[meth] = _poison_read(getattr(base, meth), meth)
    return _subclass(base, ns, "poisoned")


def _poison_item(fn: Any, op: str) -> Any:
    def hook(self: Any, key: Any, *value: Any) -> Any:
        _poison_hit(self, f"[{key!r}]", op)
        return fn(self, key, *value)
    return hook


def _poison_read(fn: Any, meth: str) -> Any:
    what = meth.strip("_") + "()"

    def hook(self: Any, *args: Any) -> Any:
        _poison_hit(self, what, "read")
        return fn(self, *args)
    return hook


# ---------------------------------------------------------------- shared class
def _make_shared(base: type) -> type:
    ga, sa, da = base.__getattribute__, base.__setattr__, base.__delattr__
    klass = _class_attrs(base)

    def __getattribute__(self: Any, name: str) -> Any:
        if name in klass or _from_ksync(2):
            return ga(self, name)
        t = _managed()
        if t is None:
            return ga(self, name)
        rt = t.rt
        rt.point(t)
        v = ga(self, name)
        rt.emit(t, ev.ACCESS, self, ("read", name))
        return v

    def __setattr__(self: Any, name: str, value: Any) -> None:
        if name in klass or _from_ksync(2):
            sa(self, name, value)
        else:
            _shared_op(self, name, "write", sa, self, name, value)

    def __delattr__(self: Any, name: str) -> None:
        if name in klass or _from_ksync(2):
            da(self, name)
        else:
            _shared_op(self, name, "write", da, self, name)

    ns: dict[str, Any] = {"__setattr__": __setattr__, "__delattr__": __delattr__}
    if issubclass(base, Watched):
        # The wrapper's own slots are machinery; its contents are seen by
        # the item, read and method hooks below and in Watched.__getattr__.
        for meth in _READ_OPS:
            ns[meth] = _shared_hook(getattr(base, meth), "read", meth.strip("_") + "()")
    else:
        ns["__getattribute__"] = __getattribute__
    for meth, op in _ITEM_OPS:
        if hasattr(base, meth):
            ns[meth] = _shared_hook(getattr(base, meth), op, None)
    return _subclass(base, ns, "shared")


def _shared_op(obj: Any, what: str, op: str, fn: Any, *args: Any) -> Any:
    """A race-checked access: a scheduling point, the access, its event."""
    t = _managed()
    if t is None:
        return fn(*args) if fn is not None else None
    rt = t.rt
    rt.point(t)
    r = fn(*args) if fn is not None else None
    rt.emit(t, ev.ACCESS, obj, (op, what))
    return r


def _shared_hook(fn: Any, op: str, what: str | None) -> Any:
    def hook(self: Any, *args: Any) -> Any:
        if _from_ksync(2):
            return fn(self, *args)
        return _shared_op(self, what or f"[{args[0]!r}]", op, fn, self, *args)
    return hook


# ---------------------------------------------------------------- wrapper
class Watched:
    """A watchable stand-in for a built-in container (list, dict, bytearray, set, ndarray).

    ``track``/``shared`` return one for such objects: use it instead of the
    container.  Items, ``len``, iteration, ``in`` and every method go to the
    container; ``unwrap()`` gives the container itself (unwatched).  Under
    ``shared``, a method call is a read of ``contents`` (a write for the
    mutating ones: append, pop, update, ...), an item access one of ``[key]``.
    """

    __slots__ = ("_ksync_target", "_ksync_name", "__weakref__")

    def __init__(self, target: Any, name: str) -> None:
        object.__setattr__(self, "_ksync_target", target)
        object.__setattr__(self, "_ksync_name", name)

    @property
    def name(self) -> str:
        return self._ksync_name

    def unwrap(self) -> Any:
        """The container itself (accesses to it are not watched)."""
        return self._ksync_target

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._ksync_target, name)
        if watch_kind(self) == "shared" and not _from_ksync(2):
            _shared_op(self, "contents", "write" if name in _MUTATORS else "read", None)
        return attr

    def __getitem__(self, key: Any) -> Any:
        return self._ksync_target[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._ksync_target[key] = value

    def __delitem__(self, key: Any) -> None:
        del self._ksync_target[key]

    def __len__(self) -> int:
        return len(self._ksync_target)

    def __iter__(self) -> Any:
        return iter(self._ksync_target)

    def __contains__(self, item: Any) -> bool:
        return item in self._ksync_target

    def __eq__(self, other: Any) -> Any:
        if isinstance(other, Watched):
            other = other.unwrap()
        return self._ksync_target == other

    __hash__ = None  # type: ignore[assignment]  # the containers wrapped are unhashable

    def __array__(self, *args: Any, **kw: Any) -> Any:
        return self._ksync_target.__array__(*args, **kw)

    def __repr__(self) -> str:
        return f"<Watched {self._ksync_name}: {self._ksync_target!r}>"
