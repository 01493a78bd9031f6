"""The system work queues: ``system_wq``, ``system_unbound_wq`` and friends.

Kernel counterpart: the queues ``workqueue_init_early()`` allocates
(kernel/workqueue.c).  A runtime is a machine, so each runtime has its own
set; the module-level names are handles that resolve to the calling
runtime's queue on first use.  System queues cannot be destroyed.
"""

from __future__ import annotations

from typing import Any

from . import ops
from .state import state
from .wq import _WQ_ORDERED, WQ_DFL_ACTIVE, WQ_HIGHPRI, WQ_UNBOUND, Workqueue, alloc_locked


class SystemQueue:
    """A handle on one system queue of whichever runtime uses it."""

    __slots__ = ("name", "flags", "max_active")

    def __init__(self, name: str, flags: int, max_active: int) -> None:
        self.name = name
        self.flags = flags
        self.max_active = max_active

    def resolve(self, rt: Any) -> Workqueue:
        """The runtime's queue of this name, allocated on first use."""
        st = state(rt)
        with rt.big:
            wq = st.system.get(self.name)
            if wq is None:
                wq = alloc_locked(st, self.name, self.flags, self.max_active, system=True)
                st.system[self.name] = wq
        return wq

    def __repr__(self) -> str:
        return f"<system workqueue {self.name}>"


system_wq = SystemQueue("events", 0, WQ_DFL_ACTIVE)
system_highpri_wq = SystemQueue("events_highpri", WQ_HIGHPRI, WQ_DFL_ACTIVE)
system_unbound_wq = SystemQueue("events_unbound", WQ_UNBOUND, 512)
system_long_wq = SystemQueue("events_long", 0, WQ_DFL_ACTIVE)
system_ordered_wq = SystemQueue("events_ordered", WQ_UNBOUND | _WQ_ORDERED, 1)

# The default queue of Work.queue() and DelayedWork.queue()/mod(), which sit below (ops.py).
ops.bind(system_wq=system_wq)
