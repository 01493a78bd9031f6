"""Zapping roots and ranges under ``mmu_lock``, with the kernel's yield rule.

Kernel counterpart: ``tdp_mmu_zap_root()``, ``tdp_mmu_iter_cond_resched()``,
``__kvm_tdp_mmu_zap_gfn_range()`` and ``tdp_mmu_free_sp_rcu_callback()`` in
arch/x86/kvm/mmu/tdp_mmu.c.  The page-table work itself (two passes, bulk
freezing, recursion) is ``tdpmmu.zap``; this module supplies what the model
owns: the RCU read section around the walk, the yield that drops and
retakes ``mmu_lock``, TLB flushes owed at a yield, freeing page-table pages
after a grace period, and the statistics the stall measurement reads.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import ksync
from ksync import rcu_read_lock, rcu_read_unlock

from .pagetable import zap_range, zap_root
from .spte import PG_LEVEL_1G
from .zap import _zap_root_pass, _ZapCtx

if TYPE_CHECKING:
    from .kvm import Kvm
    from .root import Root


class IterYield:
    """``should_yield`` for the page-table walks.  Kernel: tdp_mmu_iter_cond_resched().

    Called only after the walk made progress, with ``owed`` telling whether
    the walk removed SPTEs since its last yield.  When a reschedule is due or
    ``mmu_lock`` is contended: flush TLBs if a flush is owed (by the walk, or
    handed in by the caller as ``flush``), leave the RCU
    read section, drop and retake ``mmu_lock`` in the same mode, re-enter
    RCU, and tell the walk to restart from the root.  It also measures how
    long ``mmu_lock`` was held between yields (what other vCPUs wait behind).
    """

    __slots__ = ("kvm", "shared", "flush", "since", "max_hold_ns", "yields", "no_yield",
                 "restart_skips", "root")

    def __init__(self, kvm: Kvm, shared: bool, flush: bool = False,
                 root: Root | None = None) -> None:
        self.kvm = kvm
        self.shared = shared
        self.flush = flush
        self.since = time.perf_counter_ns()
        self.max_hold_ns = 0
        self.yields = 0
        self.no_yield = kvm.bug("zap-without-yield")
        # Read by TdpIter.cond_resched(): the iterator steps past the entry it
        # restarts at (the 5.15 bug "iter-advances-after-restart").
        self.restart_skips = kvm.bug("iter-advances-after-restart")
        # The root the walk resumes in once mmu_lock is back: its page is read
        # again, so a root freed meanwhile is an access to freed memory.
        self.root = root

    def __call__(self, owed: bool = False) -> bool:
        if self.no_yield:
            return False
        lock = self.kvm.mmu_lock
        if not (ksync.need_resched() or lock.is_contended()):
            return False
        if self.flush or owed:
            self.kvm.flush_remote_tlbs()
            self.flush = False
        self._note_hold()
        rcu_read_unlock()
        if self.shared:
            lock.read_unlock()
            ksync.cond_resched()
            lock.read_lock()
        else:
            lock.write_unlock()
            ksync.cond_resched()
            lock.write_lock()
        rcu_read_lock()
        if self.root is not None:
            ksync.check_access(self.root, "spt")
        self.since = time.perf_counter_ns()
        self.yields += 1
        return True

    def _note_hold(self) -> None:
        held = time.perf_counter_ns() - self.since
        if held > self.max_hold_ns:
            self.max_hold_ns = held

    def finish(self) -> None:
        self._note_hold()
        self.kvm.stats.note_hold(self.max_hold_ns)


#: The host's physical address width in the model (a common server value),
#: and the first gfn past it: kernel tdp_mmu_max_gfn_exclusive() /
#: shadow_phys_bits.  Only ``zap-all-skips-top-level-sptes`` looks at it.
HOST_PHYS_BITS = 46
HOST_MAX_GFN = 1 << (HOST_PHYS_BITS - 12)


def _top_level_span(level: int) -> int:
    """Gfns one entry of a level-``level`` root covers (512 GiB at 4, 256 TiB at 5)."""
    return 1 << (9 * (level - 1))


def note_spte_writes(root: Root, atomic: bool) -> None:
    """Tell the race detector that SPTEs of ``root`` are being written.

    Kernel counterpart: what KCSAN sees of tdp_mmu_set_spte_atomic() (a
    compare-exchange) versus a plain store.  One location per root: coarse,
    but two atomic writers never race, and a plain store under the read
    lock races with any writer it is not ordered with.
    """
    t = ksync.current_thread()
    rt = t.rt
    if rt.listeners:
        rt.emit(t, ksync.events.ACCESS, root, ("atomic-write" if atomic else "write", "sptes"))


def tdp_mmu_zap_root(kvm: Kvm, root: Root, shared: bool, can_yield: bool = True) -> int:
    """Zap every SPTE under ``root``.  Kernel: tdp_mmu_zap_root().

    Context: ``mmu_lock`` held (read if ``shared``).  Returns SPTEs zapped.
    A yielding zap needs a reference on the root, so that a host
    invalidation can still reach it while ``mmu_lock`` is dropped (a WARN
    otherwise).  ``can_yield=False`` is the pre-5.18 zap of an unreachable
    root by its last put (kernel 5.17: zap_gfn_range(..., can_yield=false)).
    """
    ksync.check_access(root, "spt")
    if can_yield and not root.tdp_mmu_root_count.peek():
        kvm.warn(f"{root.name}: zapped with yielding but no reference held")
    me = ksync.current_thread()
    t0 = time.perf_counter_ns()
    c0 = time.thread_time_ns()
    y = IterYield(kvm, shared)
    should_yield = y if can_yield else None
    rcu_read_lock()
    try:
        if kvm.bug("zap-all-skips-top-level-sptes") and \
                _top_level_span(root.page.level) > HOST_MAX_GFN:
            # The bug (5.16): "zap all" ended at the host's max gfn, and a
            # non-leaf entry reaching past the end was left alone.  Only the
            # 1G pass runs; the top-level entries keep their tables linked.
            ctx = _ZapCtx(root.page.alloc, shared, kvm.free_sp)
            _zap_root_pass(root.page, PG_LEVEL_1G, ctx, should_yield)
            res = ctx.result()
        elif kvm.bug("zap-root-in-one-pass"):
            # The bug: top-level entries only, so one step tears down a
            # whole 512G subtree and no yield can come between its 1G parts.
            ctx = _ZapCtx(root.page.alloc, shared, kvm.free_sp)
            _zap_root_pass(root.page, root.page.level, ctx, should_yield)
            res = ctx.result()
        elif shared and kvm.bug("non-atomic-shared-zap"):
            # The bug: plain stores (the write-lock path) under the read lock.
            note_spte_writes(root, atomic=False)
            res = zap_root(root.page, False, on_free_page=kvm.free_sp,
                           should_yield=should_yield)
        else:
            if shared:
                note_spte_writes(root, atomic=True)
            res = zap_root(root.page, shared, on_free_page=kvm.free_sp,
                           should_yield=should_yield)
    finally:
        rcu_read_unlock()
    y.finish()
    kvm.stats.note_zap(me.name, res.sptes, res.pages, time.perf_counter_ns() - t0,
                       cpu_ns=time.thread_time_ns() - c0, yields=y.yields)
    return res.sptes


def zap_gfn_range(kvm: Kvm, root: Root, start: int, end: int, shared: bool,
                  flush: bool) -> bool:
    """Zap the leaves of [start, end) in one root.  Kernel: tdp_mmu_zap_leafs().

    Context: ``mmu_lock`` held.  Returns whether a TLB flush is now owed.
    """
    ksync.check_access(root, "spt")
    y = IterYield(kvm, shared, flush, root)
    rcu_read_lock()
    try:
        res = zap_range(root.page, start, end, shared, on_free_page=kvm.free_sp,
                        should_yield=y)
    finally:
        rcu_read_unlock()
    y.finish()
    kvm.stats.note_zap(ksync.current_thread().name, res.sptes, res.pages, 0)
    return y.flush or res.sptes > 0     # may repeat a flush done at a yield: harmless
