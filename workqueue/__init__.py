"""workqueue: kthread-style work queues on a real worker pool.

The second layer of tdpmmu (see DESIGN.md), built on ``ksync`` so that
every lock, wait and happens-before edge is on the event spine.  Kernel
counterpart: kernel/workqueue.c and include/linux/workqueue.h — the same
names, the same semantics (pending bit, requeue while running, flush
colours, drain, cancel_sync, rescuers, lockdep maps on queues and works).
"""

from .flush import cancel_work, cancel_work_sync, drain_workqueue, flush_work, flush_workqueue
from .state import DEFAULT_MAX_WORKERS, WorkqueueError, set_pool_limits
from .system import (
    system_highpri_wq,
    system_long_wq,
    system_ordered_wq,
    system_unbound_wq,
    system_wq,
)
from .timer import (
    cancel_delayed_work,
    cancel_delayed_work_sync,
    flush_delayed_work,
    mod_delayed_work,
    queue_delayed_work,
)
from .work import DelayedWork, Work
from .wq import (
    WQ_CPU_INTENSIVE,
    WQ_DFL_ACTIVE,
    WQ_FREEZABLE,
    WQ_HIGHPRI,
    WQ_MAX_ACTIVE,
    WQ_MEM_RECLAIM,
    WQ_POWER_EFFICIENT,
    WQ_SYSFS,
    WQ_UNBOUND,
    Workqueue,
    alloc_ordered_workqueue,
    alloc_workqueue,
    destroy_workqueue,
    queue_work,
)

__all__ = [
    "DEFAULT_MAX_WORKERS", "WQ_CPU_INTENSIVE", "WQ_DFL_ACTIVE", "WQ_FREEZABLE", "WQ_HIGHPRI",
    "WQ_MAX_ACTIVE", "WQ_MEM_RECLAIM", "WQ_POWER_EFFICIENT", "WQ_SYSFS", "WQ_UNBOUND",
    "DelayedWork", "Work", "Workqueue", "WorkqueueError",
    "alloc_ordered_workqueue", "alloc_workqueue", "cancel_delayed_work",
    "cancel_delayed_work_sync", "cancel_work", "cancel_work_sync", "destroy_workqueue",
    "drain_workqueue", "flush_delayed_work", "flush_work", "flush_workqueue",
    "mod_delayed_work", "queue_delayed_work", "queue_work", "set_pool_limits",
    "system_highpri_wq", "system_long_wq", "system_ordered_wq", "system_unbound_wq",
    "system_wq",
]
