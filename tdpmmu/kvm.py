"""struct kvm: the VM, its locks, memslots, roots, zap queue and teardown.

Kernel counterpart: ``struct kvm`` (include/linux/kvm_host.h) with the x86
``kvm_arch`` fields the TDP MMU uses, ``kvm_create_vm``/``kvm_destroy_vm``
(virt/kvm/kvm_main.c), ``kvm_mmu_init_tdp_mmu``/``kvm_mmu_uninit_tdp_mmu``.

Field rules:
  users_count          refcount_t; zero means the VM is being destroyed
  mmu_lock             rwlock_t; readers: faults, zaps of roots and ranges;
                       writers: root loads, invalidations, notifier unmaps
  slots_lock           mutex; memslot changes (taken before mmu_lock)
  tdp_mmu_pages_lock   spinlock; the roots list (taken inside mmu_lock)
  tdp_mmu_roots        changed under tdp_mmu_pages_lock, read under mmu_lock
  mmu_valid_gen        changed under mmu_lock for write
  zap_wq               the zap worker's queue (async generation only): the
                       VM's own (5.18 as merged) or system_wq (the seed's
                       first version, where each queued zap holds a VM
                       reference)
Lock order (invariant 7): slots_lock -> mmu_lock -> tdp_mmu_pages_lock.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import ksync
from ksync import Mutex, Refcount, RwLock, SpinLock
from workqueue import (
    WQ_CPU_INTENSIVE,
    WQ_MEM_RECLAIM,
    WQ_UNBOUND,
    Work,
    alloc_workqueue,
    destroy_workqueue,
    flush_workqueue,
    queue_work,
    system_wq,
)

from .bugs import check_bug_names
from .free_sp import still_maps  # below kvm.py and root.py: both free pages
from .host import HostMemory
from .memslot import KVM_ADDRESS_SPACE_NUM, Memslots
from .pagetable import PageAllocator
from .root import invalidate_all_roots, tdp_mmu_zap_root_work, zap_invalidated_roots
from .stats import KvmStats
from .vcpu import Vcpu

ZAP_MODES = ("sync", "async", "preserve")
#: Where ``async`` queues its zaps: ``kvm`` the VM's own queue, flushed at
#: teardown (5.18 as merged); ``system`` system_wq, never flushed by the VM,
#: each queued zap holding a VM reference (the seed's first version).
ZAP_WQS = ("kvm", "system")


class KvmError(ValueError):
    """Misuse of the model (bad argument, operation on a destroyed VM)."""


class _Allocator(PageAllocator):
    """Page-table pages, put under use-after-free watch when checkers listen.

    ``freed`` counts pages whose RCU callback ran; after teardown
    ``allocated == freed + discarded`` (every table page came back).
    ``warn`` is the owning VM's WARN, for a page freed while it still maps.
    """

    __slots__ = ("watch", "freed", "warn")

    def alloc_page(self, level: int, gfn: int, spt: Any = None) -> Any:
        page = super().alloc_page(level, gfn, spt)
        if self.watch:
            ksync.track(page, "page table")
        return page

    def note_freed(self) -> None:
        with self._lock:
            self.freed += 1


def _cpu_relax() -> None:
    """Spinning on an SPTE another thread froze: a scheduling point, not a busy loop.

    Not cond_resched(): the spinner holds ``mmu_lock`` and is in an RCU read
    section, where sleeping is not allowed (kernel: cpu_relax()).
    """
    t = ksync.current_thread()
    t.rt.point(t)


class Kvm:
    """One VM.  ``Kvm(zap="async", bugs=())`` must be created on a managed thread.

    ``zap_wq`` (``async`` only) picks the zap queue, one of ``ZAP_WQS``.
    """

    def __init__(self, *, zap: str = "async", bugs: Iterable[str] = (), root_level: int = 4,
                 name: str = "kvm", zap_wq: str = "kvm") -> None:
        if zap not in ZAP_MODES:
            raise KvmError(f"Kvm(zap={zap!r}): zap is one of {', '.join(ZAP_MODES)}")
        if zap_wq not in ZAP_WQS:
            raise KvmError(f"Kvm(zap_wq={zap_wq!r}): zap_wq is one of {', '.join(ZAP_WQS)}")
        if zap_wq != "kvm" and zap != "async":
            raise KvmError(f"Kvm(zap={zap!r}, zap_wq={zap_wq!r}): only the async "
                           f"generation queues zaps")
        if root_level not in (4, 5):
            raise KvmError(f"Kvm(root_level={root_level!r}): 4 or 5 level paging")
        self.bugs = check_bug_names(bugs)
        self.rt = ksync.current_runtime()
        self.name = name
        self.zap = zap
        self.root_level = root_level
        self.users_count = Refcount(1, "kvm->users_count")
        self.mmu_lock = RwLock("kvm->mmu_lock")
        self.slots_lock = Mutex("kvm->slots_lock")
        self.tdp_mmu_pages_lock = SpinLock("kvm->arch.tdp_mmu_pages_lock")
        self.memslots = [Memslots(i) for i in range(KVM_ADDRESS_SPACE_NUM)]
        self.tdp_mmu_roots: list[Any] = []
        self.root_seq = 0
        self.mmu_valid_gen = 0
        self.mmu_invalidate_seq = 0
        self.mmu_invalidate_in_progress = 0
        self.alloc = _Allocator(cpu_relax=_cpu_relax)
        self.alloc.watch = bool(self.rt.listeners)
        self.alloc.freed = 0
        self.alloc.warn = self.warn
        self.host = HostMemory()
        self.stats = KvmStats()
        self.vcpus: list[Any] = []
        self.sync_invalidated: list[Any] = []
        self.destroyed = False
        self.zap_wq: Any = None
        # Does teardown flush and destroy zap_wq?  Not system_wq, which is no VM's.
        self.owns_zap_wq = zap == "async" and zap_wq == "kvm"
        if zap_wq == "system":
            self.zap_wq = system_wq
        elif zap == "async":
            self.zap_wq = alloc_workqueue("kvm", WQ_UNBOUND | WQ_MEM_RECLAIM | WQ_CPU_INTENSIVE, 0)
        ksync.track(self, "struct kvm")

    def __repr__(self) -> str:
        wq = "" if self.owns_zap_wq or self.zap_wq is None else " zap_wq=system"
        return f"<Kvm {self.name} zap={self.zap}{wq} roots={len(self.tdp_mmu_roots)}>"

    # ---------------------------------------------------------------- helpers
    def bug(self, name: str) -> bool:
        """Is catalogued bug ``name`` switched on for this VM?"""
        return name in self.bugs

    def warn(self, what: str) -> None:
        """Kernel: WARN_ON() — a ``warn`` report naming this VM."""
        site = ksync.report.call_site(("ksync", "tdpmmu.kvm"))
        self.rt.report("warn", f"{self.name}: {what}",
                       f"WARNING: {what}\n  at {site}\n  VM {self.name} (zap={self.zap})",
                       vm=self.name)

    def check_alive(self, op: str) -> None:
        """Refuse ``op`` on a destroyed VM (KvmError), after the KASAN-style access check."""
        ksync.check_access(self, op)
        if self.destroyed:
            raise KvmError(f"{self.name}: {op} on a destroyed VM "
                           f"(at {ksync.report.call_site(('ksync', 'tdpmmu'))})")

    def free_sp(self, page: Any) -> None:
        """Free a zapped page-table page after a grace period (kernel: call_rcu)."""
        if self.bug("free-page-table-without-rcu"):
            _free_sp_now(page)
        else:
            ksync.call_rcu(_free_sp_now, page)

    def flush_remote_tlbs(self) -> None:
        """Kernel: kvm_flush_remote_tlbs() — every vCPU drops its cached translations."""
        self.stats.count("tlb_flushes")
        for v in self.vcpus:
            with v.mode_lock:      # the IPI waits until the vCPU left guest mode
                v.tlb.clear()

    def stats_snapshot(self) -> dict[str, Any]:
        """Kernel: the VM's stats (kvm_vm_stat) — counters, timings, pages and SPTEs by level.

        ``pt_pages[level]`` counts linked page-table pages, ``leaf_sptes[level]``
        present leaf SPTEs (1 = 4K, 2 = 2M, 3 = 1G), ``roots_alive`` the roots
        still on ``tdp_mmu_roots``; the rest is ``KvmStats.snapshot()``.
        """
        # Read after teardown too (the harness's accounting): not a guest access.
        with ksync.kasan_disabled():
            snap = self.stats.snapshot()
            snap.update(self.alloc.stats())
            snap["pt_pages_freed"] = self.alloc.freed
            snap["roots_alive"] = len(self.tdp_mmu_roots)
        return snap

    # ---------------------------------------------------------------- zap queue
    def new_zap_work(self, root: Any) -> Any:
        """Kernel: INIT_WORK(&root->tdp_mmu_async_work, tdp_mmu_zap_root_work)."""
        kvm = self

        def tdp_mmu_zap_root_work_fn(work: Any) -> None:
            tdp_mmu_zap_root_work(kvm, root)

        tdp_mmu_zap_root_work_fn.__qualname__ = "tdp_mmu_zap_root_work"
        return Work(tdp_mmu_zap_root_work_fn, name=f"{root.name} zap")

    def queue_zap_work(self, root: Any) -> bool:
        """Kernel: queue_work(kvm->arch.tdp_mmu_zap_wq, &root->tdp_mmu_async_work), or
        schedule_work() under ``zap_wq="system"``."""
        return queue_work(self.zap_wq, root.work)

    def flush_zap_queue(self) -> None:
        """Kernel: flush_workqueue(kvm->arch.tdp_mmu_zap_wq), or of system_wq under
        ``zap_wq="system"`` (the queue the seed's first version put its zaps on)."""
        flush_workqueue(self.zap_wq)

    # ---------------------------------------------------------------- lifetime
    def get(self) -> None:
        """Kernel: kvm_get_kvm()."""
        self.users_count.inc()

    def get_safe(self) -> bool:
        """Kernel: kvm_get_kvm_safe() — a reference unless ``users_count`` already hit zero."""
        return self.users_count.inc_not_zero()

    def put(self) -> None:
        """Kernel: kvm_put_kvm() — the last put destroys the VM."""
        if self.users_count.dec_and_test():
            self.destroy_vm()

    def destroy(self) -> None:
        """Drop the creator's reference: the VM is destroyed once no user is left."""
        self.put()

    def destroy_vm(self) -> None:
        """Kernel: kvm_destroy_vm(), in the kernel's order.

        Context: ``users_count`` just reached zero; every vCPU thread has
        stopped running guest code.  Under ``zap_wq="system"`` this may run
        on a kworker, from the zap worker's final ``put``.
        """
        ksync.check_access(self, "destroy")
        if self.destroyed:
            raise KvmError(f"{self.name}: destroyed twice")
        self.destroyed = True
        for v in self.vcpus:
            v.mmu_unload()            # put_root sees users_count == 0: zaps inline
        for v in self.vcpus:
            ksync.kfree(v)
        self.mmu_uninit()
        if self.owns_zap_wq and self.bug("no-flush-before-free"):
            # The bug: struct kvm goes while a queued zap may still run
            # (the queue pointer is read first, as the kernel holds it in a local).
            wq = self.zap_wq
            ksync.kfree(self)
            destroy_workqueue(wq)
            return
        ksync.kfree(self)

    def mmu_uninit(self) -> None:
        """Kernel: kvm_mmu_uninit_tdp_mmu().

        Under ``zap_wq="system"`` there is no queue of the VM's to flush: every
        zap still queued holds a VM reference, so none is left by now.
        """
        if self.zap == "preserve":
            invalidate_all_roots(self)
            zap_invalidated_roots(self)
        if self.owns_zap_wq and not self.bug("no-flush-before-free"):
            flush_workqueue(self.zap_wq)
            destroy_workqueue(self.zap_wq)
        if not self.owns_zap_wq or not self.bug("no-flush-before-free"):
            if self.alloc.live_pages:
                self.warn(f"{self.alloc.live_pages} page-table pages left at uninit")
            if self.tdp_mmu_roots:
                self.warn(f"roots left at uninit: {self.tdp_mmu_roots}")
        ksync.rcu_barrier()

    # ---------------------------------------------------------------- vCPUs
    def create_vcpu(self, vcpu_id: int | None = None, **kw: Any) -> Any:
        """Kernel: kvm_vm_ioctl_create_vcpu()."""
        self.check_alive("create_vcpu")
        v = Vcpu(self, len(self.vcpus) if vcpu_id is None else vcpu_id, **kw)
        self.vcpus.append(v)
        return v

    def make_all_cpus_request(self, req: int) -> None:
        """Kernel: kvm_make_all_cpus_request() — every vCPU handles ``req`` before guest entry."""
        for v in self.vcpus:
            v.make_request(req)


def _free_sp_now(page: Any) -> None:
    """Kernel: tdp_mmu_free_sp().  A page freed while it still maps something is a WARN.

    Every entry of a torn-down table is frozen and its children detached, so
    no SPTE can be reached through a freed page; checked on one byte per
    entry (cost: one numpy pass per freed page).
    """
    alloc = page.alloc
    alloc.note_freed()
    if still_maps(page):
        alloc.warn(f"{page!r} freed while it still holds present SPTEs or child tables")
    ksync.kfree(page)
