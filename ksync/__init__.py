"""ksync: kernel-style synchronisation over a runtime with free and controlled modes.

The bottom layer of tdpmmu (see DESIGN.md): instrumented spinlocks, rwlocks,
mutexes, refcounts, atomics, completions and RCU, on managed threads whose
every visible operation is an event on one spine that checkers listen to.
"""

from . import events
from .assertions import lockdep_assert_held, lockdep_assert_held_read, lockdep_assert_held_write
from .atomic import Atomic
from .completion import Completion
from .errors import (
    DeadlockUnwind,
    KsyncError,
    NoRuntimeError,
    ReplayDivergence,
    ReportError,
    RunAborted,
    ThreadFailed,
)
from .events import Checker, TraceRecorder
from .lockmap import LockMap, lock_map_acquire, lock_map_release
from .memory import Shared, check_access, kfree, shared, track
from .mutex import Mutex
from .rcu import call_rcu, rcu, rcu_barrier, rcu_read_lock, rcu_read_unlock, synchronize_rcu
from .refcount import REFCOUNT_SATURATED, Refcount
from .report import KINDS, Report
from .runtime import ALL_CHECKS, Runtime, register_checker
from .rwlock import RwLock, cond_resched_rwlock_read, cond_resched_rwlock_write
from .sleep import cond_resched, might_sleep, msleep, need_resched, usleep
from .spinlock import SpinLock
from .strategy import RandomStrategy, ReplayStrategy, Strategy, decode_schedule, encode_schedule
from .thread import KThread, current_runtime, current_thread
from .watch import Watched, kasan_disabled

__all__ = [
    "ALL_CHECKS", "KINDS", "REFCOUNT_SATURATED",
    "Atomic", "Checker", "Completion", "DeadlockUnwind", "KThread", "KsyncError", "LockMap", "Mutex",
    "NoRuntimeError", "RandomStrategy", "Refcount", "ReplayDivergence", "ReplayStrategy",
    "Report", "ReportError", "RunAborted", "Runtime", "RwLock", "Shared", "SpinLock",
    "Strategy", "ThreadFailed", "TraceRecorder", "Watched",
    "call_rcu", "check_access", "cond_resched", "cond_resched_rwlock_read",
    "cond_resched_rwlock_write", "current_runtime", "current_thread", "decode_schedule",
    "encode_schedule", "events", "kasan_disabled", "kfree", "lockdep_assert_held", "lockdep_assert_held_read",
    "lockdep_assert_held_write", "lock_map_acquire", "lock_map_release", "might_sleep", "msleep", "need_resched", "rcu", "rcu_barrier",
    "rcu_read_lock", "rcu_read_unlock", "register_checker", "shared", "synchronize_rcu", "track", "usleep",
]
from . import checkers  # noqa: F401  (registers the checkers)
