"""Operations bound late: what the objects' Python-style methods call in modules above them.

The modules stack, bottom first: ``ops``, ``pool``, ``state``, ``work``,
``flush``, ``wq``, ``timer``, ``system``; each imports only those below it.
But ``Work.flush()`` is ``flush_work(self)``, ``Work.queue()`` defaults to
``system_wq``, ``Workqueue.queue_delayed()`` is ``queue_delayed_work()``, and the
runtime-exit hook in ``state.py`` closes the timer wheel and drains queues:
calls from a lower module into a higher one.  Importing those would close a
cycle, so the higher module hands its function down instead: when it loads
it calls ``bind()``, and the lower module calls through this table
(``ops.flush_work(work)``, looked up at call time).

Importing any ``workqueue`` module runs the package ``__init__`` first, and it
imports every module, so each slot is bound before a Work or Workqueue can
exist.  Who binds what:

  wq.py      queue_work
  flush.py   flush_work, cancel_work, cancel_work_sync, drain_quietly
  timer.py   queue_delayed_work, mod_delayed_work, flush_delayed_work, close_wheel
  system.py  system_wq
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_SLOTS = ("queue_work", "flush_work", "cancel_work", "cancel_work_sync", "drain_quietly",
          "queue_delayed_work", "mod_delayed_work", "flush_delayed_work", "close_wheel",
          "system_wq")


def _unbound(name: str) -> Callable[..., Any]:
    def op(*args: Any, **kwargs: Any) -> Any:
        # Only reachable if a module was loaded without the package: say so, not AttributeError.
        raise RuntimeError(f"workqueue.ops.{name} is not bound: import the workqueue "
                           "package, which loads the module that provides it")
    op.__qualname__ = f"unbound {name}"
    return op


queue_work: Callable[..., bool] = _unbound("queue_work")
flush_work: Callable[..., bool] = _unbound("flush_work")
cancel_work: Callable[..., bool] = _unbound("cancel_work")
cancel_work_sync: Callable[..., bool] = _unbound("cancel_work_sync")
drain_quietly: Callable[..., None] = _unbound("drain_quietly")
queue_delayed_work: Callable[..., bool] = _unbound("queue_delayed_work")
mod_delayed_work: Callable[..., bool] = _unbound("mod_delayed_work")
flush_delayed_work: Callable[..., bool] = _unbound("flush_delayed_work")
close_wheel: Callable[..., None] = _unbound("close_wheel")
#: The ``system_wq`` handle (a ``system.SystemQueue``), the default queue of ``Work.queue()``.
system_wq: Any = None


def bind(**provided: Any) -> None:
    """Fill slots with the providing module's functions (called once, at its import)."""
    unknown = set(provided) - set(_SLOTS)
    if unknown:
        raise KeyError(f"workqueue.ops.bind: no slot named {sorted(unknown)}")
    globals().update(provided)
