"""Statistics of one VM: what the stall measurement and the labs read.

Kernel counterpart: ``struct kvm_vm_stat`` (pages by level, TLB flushes) plus
what the kernel only shows through tracing: how long each vCPU call blocked
and how long ``mmu_lock`` was held between yields.  Guarded by a plain lock:
these are observations of the model, not model state the checkers watch.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any


class KvmStats:
    """Counters and timings; ``snapshot()`` returns a plain dict."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.zapped_sptes = 0
        self.zapped_pages = 0
        self.tlb_flushes = 0
        self.roots_allocated = 0
        self.roots_reused = 0
        self.roots_freed = 0          # last reference put (freeing queued on RCU)
        self.roots_rcu_freed = 0      # freed after the grace period
        self.zaps_queued = 0          # zaps handed to the worker (async)
        self.inline_zaps = 0          # zaps put_root did itself during teardown (async)
        self.faults = 0
        self.fault_retries = 0
        self.max_mmu_lock_hold_ns = 0
        self.zap_ns: dict[str, int] = defaultdict(int)       # thread name -> ns zapping
        self.zap_cpu_ns: dict[str, int] = defaultdict(int)   # thread name -> CPU ns zapping
        self.zap_yields = 0                                   # mmu_lock drops by root zaps
        self.block_ns: dict[tuple[str, str], list[int]] = defaultdict(list)
        self.lock_wait_ns: dict[str, int] = defaultdict(int)  # thread -> worst mmu_lock wait

    def note_zap(self, thread: str, sptes: int, pages: int, ns: int, cpu_ns: int = 0,
                 yields: int = 0) -> None:
        """One zap by ``thread``: wall ``ns``, and the thread's own CPU time ``cpu_ns``
        (wall minus CPU is time spent waiting: for mmu_lock after a yield, or for a core)."""
        with self._lock:
            self.zapped_sptes += sptes
            self.zapped_pages += pages
            self.zap_ns[thread] += ns
            self.zap_cpu_ns[thread] += cpu_ns
            self.zap_yields += yields

    def note_hold(self, ns: int) -> None:
        with self._lock:
            self.max_mmu_lock_hold_ns = max(self.max_mmu_lock_hold_ns, ns)

    def note_block(self, thread: str, call: str, ns: int) -> None:
        """Time a vCPU spent inside one KVM call (kernel: what the guest saw as a stall).

        Calls recorded: ``mmu_load``, ``mmu_unload``, ``page_fault``; keyed by
        (vCPU thread, call), one entry per call, wall nanoseconds.
        """
        with self._lock:
            self.block_ns[(thread, call)].append(ns)

    def note_lock_wait(self, thread: str, ns: int) -> None:
        with self._lock:
            if ns > self.lock_wait_ns[thread]:
                self.lock_wait_ns[thread] = ns

    def max_block_ns(self, call: str | None = None) -> int:
        """The longest single vCPU call recorded (of kind ``call``, or any)."""
        with self._lock:
            return max((max(v) for (_, c), v in self.block_ns.items()
                        if v and (call is None or c == call)), default=0)

    def count(self, field: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, field, getattr(self, field) + n)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "zapped_sptes": self.zapped_sptes, "zapped_pages": self.zapped_pages,
                "tlb_flushes": self.tlb_flushes, "roots_allocated": self.roots_allocated,
                "roots_reused": self.roots_reused, "roots_freed": self.roots_freed,
                "roots_rcu_freed": self.roots_rcu_freed, "inline_zaps": self.inline_zaps,
                "zaps_queued": self.zaps_queued, "faults": self.faults,
                "fault_retries": self.fault_retries,
                "max_mmu_lock_hold_ns": self.max_mmu_lock_hold_ns,
                "zap_ns": dict(self.zap_ns), "zap_cpu_ns": dict(self.zap_cpu_ns),
                "zap_yields": self.zap_yields,
                "block_ns": {f"{t}:{c}": list(v) for (t, c), v in self.block_ns.items()},
                "lock_wait_ns": dict(self.lock_wait_ns),
            }
