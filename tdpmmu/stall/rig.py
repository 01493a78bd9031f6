"""The VM that ``tdpmmu stall`` measures: one vCPU with a big 4K-populated root, others faulting.

Kernel counterpart: the situation the seed patch ("KVM: x86/mmu: Zap defunct
roots via asynchronous worker", 5.18) describes — a vCPU task drops the last
reference to a root that dirty logging left fully populated with 4K SPTEs,
while the VM's other vCPUs keep taking page faults under ``mmu_lock``.

Layout of one ``StallRig`` (built on a managed thread of a free-mode runtime):

* memslot 0, ``memory_bytes`` of guest memory with dirty logging on: the
  measured memory.  The dropping vCPU (``vcpu-0``) runs a nested guest
  (``guest_mode`` role), so its root is its own and its put is the last
  reference.  That root — the VM's real root, loaded by ``mmu_load`` and
  reachable from the vCPU — is filled with ``populate_4k`` under
  ``mmu_lock`` for write, mapping every gfn of slot 0 to its host pfn as a
  writable 4K leaf, the tree dirty logging leaves behind.
* memslot 1, above it, with dirty logging on: ``faulters`` other vCPUs
  (``vcpu-1``…) on the ordinary root each read a fresh 4K page every
  ``fault_interval_us``, so every access is a slow page fault under
  ``mmu_lock`` for read.  The pacing stands in for separate host CPUs: in
  CPython every thread shares one interpreter lock, and vCPUs faulting flat
  out would measure that lock instead of ``mmu_lock``.
* a ``host`` thread unmaps one guest page every ``invalidate_interval_ms``
  (an MMU-notifier invalidation, as page migration or reclaim do), taking
  ``mmu_lock`` for write.  A writer is what turns a long read-side hold
  into a stall for everyone: once it waits, new readers queue behind it.

Thread-safety: the methods are called by the thread that built the rig;
the vCPU threads only touch their own ``Vcpu`` and the flags below.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import ksync
from ksync import Completion
from workqueue import Work, flush_workqueue, queue_work

from ..kvm import Kvm
from ..memslot import KVM_MEM_LOG_DIRTY_PAGES
from ..mmu import mmu_notifier_invalidate_range, set_memory_region
from ..pagetable import populate_4k
from ..stats import KvmStats
from .sizes import PAGE_SIZE

BIG_SLOT, FAULT_SLOT = 0, 1
#: Fresh gfns per faulting vCPU (4 GiB): at ~1,000 faults/s none wraps in a run.
FAULT_SPAN_PAGES = 1 << 20
#: Faults each faulting vCPU takes before the measurement starts (its root is loaded).
WARMUP_FAULTS = 8
#: How long to wait for the other threads to finish what they were doing when a window
#: closed; only a thread that is itself stuck makes this run out.
SETTLE_TIMEOUT_S = 60.0
_GIB_PAGES = (1 << 30) // PAGE_SIZE


@dataclass
class DropSample:
    """One drop of the last reference (times in ns).  ``zapped_by`` lists zapping threads."""

    block_ns: int               # vcpu-0 inside mmu_unload (kernel: kvm_mmu_unload)
    reload_ns: int              # mmu_unload + mmu_load: until vcpu-0 has a root again
    zap_ns: int                 # wall time zapping, on any thread
    zap_cpu_ns: int             # CPU time of the zapping threads while zapping
    worker_zap_ns: int          # wall time zapping on threads that are not vCPUs
    zapped_sptes: int
    zapped_by: tuple[str, ...]
    max_hold_ns: int            # longest mmu_lock hold by a zap between two yields
    zap_yields: int
    max_wait_ns: int            # worst mmu_lock wait of the faulting vCPUs
    faults: int                 # page faults taken by the others meanwhile
    host_max_ns: int            # longest host invalidation (mostly its wait for write)
    host_invalidations: int
    populate_s: float


@dataclass
class DeleteSample:
    """One deletion of the measured memslot (times in ns)."""

    delete_ns: int              # KVM_SET_USER_MEMORY_REGION(size 0) as the caller sees it
    caller_zap_cpu_ns: int      # CPU time the caller spent zapping
    off_caller_zap_cpu_ns: int  # CPU time other threads (worker, vCPUs) spent zapping
    off_caller_zap_ns: int      # wall time of those zaps
    zapped_sptes: int
    max_wait_ns: int
    host_max_ns: int
    populate_s: float


class StallRig:
    """Build with ``StallRig(kvm, memory_bytes)``, then ``start()``, ``drop()``,
    ``delete_memslot()`` and, always, ``stop()`` (which destroys the VM)."""

    def __init__(self, kvm: Kvm, memory_bytes: int, faulters: int = 2,
                 fault_interval_us: float = 500.0, invalidate_interval_ms: float = 10.0) -> None:
        if memory_bytes <= 0 or memory_bytes % PAGE_SIZE:
            raise ValueError(f"StallRig: memory_bytes={memory_bytes} is not a positive "
                             "multiple of 4096")
        if faulters < 0:
            raise ValueError(f"StallRig: faulters={faulters} is negative")
        if fault_interval_us < 0:
            raise ValueError(f"StallRig: fault_interval_us={fault_interval_us} is negative")
        if invalidate_interval_ms < 0:
            raise ValueError(f"StallRig: invalidate_interval_ms={invalidate_interval_ms} is "
                             "negative (0 turns the host thread off)")
        self.kvm = kvm
        self.rt = kvm.rt
        self.npages = memory_bytes // PAGE_SIZE
        self.nfaulters = faulters
        self.fault_interval_us = fault_interval_us
        self.invalidate_interval_ms = invalidate_interval_ms
        self.big_slot: Any = None
        self.fault_base = (-(-self.npages // _GIB_PAGES) + 1) * _GIB_PAGES
        self.dropper = kvm.create_vcpu(0, guest_mode=True)
        self.faulters = [kvm.create_vcpu(i + 1) for i in range(faulters)]
        self.vcpu_names = {v.name for v in kvm.vcpus}
        self.populated_root: Any = None
        self._threads: list[Any] = []
        self._loaded = Completion("stall: vcpu-0 loaded")
        self._go = Completion("stall: drop now")
        self._dropped = Completion("stall: vcpu-0 reloaded")
        self._leave = Completion("stall: vcpus may exit")
        self._warm = Completion("stall: faulters warmed up")
        self._stop = False
        self._drop_ns: tuple[int, int] | None = None
        self._stopped = False
        self.host_worst_ns = 0          # written by the host thread, reset per window
        self.host_count = 0
        # Operations finished per observing thread (faulters, then host): see _settle().
        self._done_ops = [0] * (faulters + 1)

    # ---------------------------------------------------------------- set-up
    def start(self) -> float:
        """Slots, vcpu-0's root loaded and populated, faulters running.  Returns populate seconds."""
        kvm = self.kvm
        self.big_slot = set_memory_region(kvm, BIG_SLOT, 0, self.npages, KVM_MEM_LOG_DIRTY_PAGES)
        set_memory_region(kvm, FAULT_SLOT, self.fault_base,
                          max(1, self.nfaulters) * FAULT_SPAN_PAGES, KVM_MEM_LOG_DIRTY_PAGES)
        self._threads.append(self.rt.spawn(self._dropper_thread, name=self.dropper.name))
        self._loaded.wait()
        if self.dropper.root is None:
            raise RuntimeError(f"stall: {self.dropper.name} could not load its MMU")
        populate_s = self._populate_dropper_root()
        self._warm_zap_worker()
        for i, v in enumerate(self.faulters):
            start = self.fault_base + i * FAULT_SPAN_PAGES
            self._threads.append(self.rt.spawn(self._fault_thread, v, start, name=v.name))
        for _ in self.faulters:
            self._warm.wait()
        if self.invalidate_interval_ms:
            self._threads.append(self.rt.spawn(self._host_thread, name="host"))
        return populate_s

    def _populate_dropper_root(self) -> float:
        """Fill vcpu-0's current root with 4K leaves for all of slot 0 (mmu_lock for write)."""
        kvm = self.kvm
        root = self.dropper.root
        t0 = time.perf_counter()
        kvm.mmu_lock.write_lock()
        try:
            populate_4k(root.page, self.big_slot.base_gfn, self.npages, self.big_slot.host_base,
                        True, kvm.alloc)
        finally:
            kvm.mmu_lock.write_unlock()
        self.populated_root = root
        return time.perf_counter() - t0

    def _warm_zap_worker(self) -> None:
        """Let the zap queue's pool start a kworker now, as a running host already has one,
        so the measured drop does not pay for creating a thread."""
        if self.kvm.zap_wq is None:
            return
        queue_work(self.kvm.zap_wq, Work(_noop, name="stall warm-up"))
        flush_workqueue(self.kvm.zap_wq)

    # ---------------------------------------------------------------- threads
    def _dropper_thread(self) -> None:
        v = self.dropper
        try:
            v.mmu_load()
        finally:
            self._loaded.complete()         # the builder never waits for a dead thread
        self._go.wait()
        try:
            if not self._stop:
                t0 = time.perf_counter_ns()
                v.mmu_unload()
                t1 = time.perf_counter_ns()
                v.mmu_load()
                self._drop_ns = (t1 - t0, time.perf_counter_ns() - t0)
        finally:
            self._dropped.complete()
        self._leave.wait()

    def _fault_thread(self, v: Any, start: int) -> None:
        gfn, end = start, start + FAULT_SPAN_PAGES
        n = 0
        try:
            while not self._stop:
                v.access(gfn)
                n += 1
                if n == WARMUP_FAULTS:
                    self._warm.complete()
                self._done_ops[v.id - 1] += 1
                gfn = gfn + 1 if gfn + 1 < end else start
                ksync.usleep(self.fault_interval_us)
        finally:
            if n < WARMUP_FAULTS:
                self._warm.complete()

    def _host_thread(self) -> None:
        # Unmap pages the faulters mapped while warming up: mapped, and not in their way.
        nf = max(1, self.nfaulters)
        k = 0
        while True:
            ksync.msleep(self.invalidate_interval_ms)
            if self._stop:
                return
            gfn = self.fault_base + (k % nf) * FAULT_SPAN_PAGES + (k // nf) % WARMUP_FAULTS
            t0 = time.perf_counter_ns()
            mmu_notifier_invalidate_range(self.kvm, 0, gfn, gfn + 1)
            dt = time.perf_counter_ns() - t0
            if dt > self.host_worst_ns:
                self.host_worst_ns = dt
            self.host_count += 1
            self._done_ops[-1] += 1
            k += 1

    # ---------------------------------------------------------------- measurements
    def _fresh_stats(self) -> KvmStats:
        # A new observation window: the old object keeps what came before, including
        # waits behind a populate that only end (and are recorded) after it.
        self._settle()
        self.kvm.stats = KvmStats()
        self.host_worst_ns = 0
        self.host_count = 0
        return self.kvm.stats

    def _settle(self) -> None:
        """Close a window: let every observer finish the operation it was in, and one more.

        A fault or an invalidation that waited for ``mmu_lock`` during the
        window records its wait only once it got the lock; two completed
        operations after this point mean the one in flight has recorded.
        """
        live = list(range(self.nfaulters))
        if self.invalidate_interval_ms:
            live.append(self.nfaulters)
        target = {i: self._done_ops[i] + 2 for i in live}
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while any(self._done_ops[i] < n for i, n in target.items()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"stall: the faulting vCPUs or the host made no progress "
                                   f"for {SETTLE_TIMEOUT_S:.0f} s")
            ksync.msleep(1)

    def _worst_wait(self, stats: KvmStats) -> int:
        """The faulting vCPUs' longest wait for ``mmu_lock``: a fault's wait for the read
        lock, or a whole MMU unload/load (dropping an obsolete root and loading a new one,
        which is waiting for the lock in all but a few microseconds)."""
        worst = 0
        for v in self.faulters:
            worst = max(worst, stats.lock_wait_ns.get(v.name, 0),
                        *stats.block_ns.get((v.name, "mmu_load"), ()),
                        *stats.block_ns.get((v.name, "mmu_unload"), ()))
        return worst

    def drop(self) -> DropSample:
        """vcpu-0 unloads (dropping the last reference) and reloads; wait for any zap to end."""
        stats = self._fresh_stats()
        self._go.complete()
        self._dropped.wait()
        if self.kvm.zap_wq is not None:
            flush_workqueue(self.kvm.zap_wq)
        self._settle()
        if self._drop_ns is None:
            raise RuntimeError("stall: vcpu-0 did not drop its root (the rig was stopped)")
        block_ns, reload_ns = self._drop_ns
        snap = stats.snapshot()
        zap_ns = snap["zap_ns"]
        return DropSample(
            block_ns=block_ns, reload_ns=reload_ns, zap_ns=sum(zap_ns.values()),
            zap_cpu_ns=sum(snap["zap_cpu_ns"].values()),
            worker_zap_ns=sum(ns for t, ns in zap_ns.items() if t not in self.vcpu_names),
            zapped_sptes=snap["zapped_sptes"],
            zapped_by=tuple(sorted(t for t, ns in zap_ns.items() if ns)),
            max_hold_ns=snap["max_mmu_lock_hold_ns"], zap_yields=snap["zap_yields"],
            max_wait_ns=self._worst_wait(stats), faults=snap["faults"],
            host_max_ns=self.host_worst_ns, host_invalidations=self.host_count, populate_s=0.0)

    def delete_memslot(self) -> DeleteSample:
        """Delete slot 0 (kvm_mmu_zap_all_fast, then the zap of the invalidated roots).

        Its root is populated again first if the drop zapped it (``sync`` and
        ``async``); under ``preserve`` vcpu-0 reloaded the very same root.
        """
        populate_s = 0.0
        if self.dropper.root is not self.populated_root:
            populate_s = self._populate_dropper_root()
        stats = self._fresh_stats()
        me = ksync.current_thread().name
        t0 = time.perf_counter_ns()
        set_memory_region(self.kvm, BIG_SLOT, 0, 0)
        delete_ns = time.perf_counter_ns() - t0
        self._settle()
        self.big_slot = None
        snap = stats.snapshot()
        cpu = snap["zap_cpu_ns"]
        return DeleteSample(
            delete_ns=delete_ns, caller_zap_cpu_ns=cpu.get(me, 0),
            off_caller_zap_cpu_ns=sum(ns for t, ns in cpu.items() if t != me),
            off_caller_zap_ns=sum(ns for t, ns in snap["zap_ns"].items() if t != me),
            zapped_sptes=snap["zapped_sptes"], max_wait_ns=self._worst_wait(stats),
            host_max_ns=self.host_worst_ns, populate_s=populate_s)

    # ---------------------------------------------------------------- teardown
    def stop(self) -> None:
        """Stop the vCPU threads and destroy the VM (kvm_destroy_vm).  Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self._stop = True
        self._go.complete_all()
        self._leave.complete_all()
        failure: BaseException | None = None
        for t in self._threads:
            try:
                self.rt.join(t)
            except ksync.ThreadFailed as e:
                failure = failure or e
        self.kvm.destroy()
        if failure is not None:
            raise failure


def _noop(work: Any) -> None:
    """The warm-up work: nothing to do."""
