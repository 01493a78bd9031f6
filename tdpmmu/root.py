"""TDP MMU roots: references, invalidation, and who zaps them.

Kernel counterpart: the root handling of arch/x86/kvm/mmu/tdp_mmu.c —
``kvm_tdp_mmu_get_root``, ``kvm_tdp_mmu_put_root``, ``tdp_mmu_next_root``,
``kvm_tdp_mmu_get_vcpu_root_hpa``, ``kvm_tdp_mmu_invalidate_all_roots``,
``kvm_tdp_mmu_zap_invalidated_roots`` and the zap worker
``tdp_mmu_zap_root_work`` — in the three generations of KERNEL.md:

* ``sync``: whoever drops the last reference zaps the whole root itself;
* ``async`` (5.18, the seed): the last put marks the root invalid, gives the
  count back one reference owned by the zapper, and queues the zap on the
  VM's work queue — unless the VM is being destroyed, then it zaps inline.
  Under ``Kvm(zap_wq="system")``, the seed's first version: the zap goes to
  system_wq, which teardown never flushes, so each queued zap holds a VM
  reference taken with kvm_get_kvm_safe(); when none can be taken the
  caller zaps inline, and the worker drops the reference when done;
* ``preserve`` (6.6 on): the MMU holds its own reference to every valid root;
  only invalidation gives it up, and the invalidating task zaps under the
  read lock.

Field rules (``kvm->mmu_lock`` is "M", ``tdp_mmu_pages_lock`` is "P"):
  root.invalid            written under M for write, or by the task that
                          took the count to zero (nobody else can get a
                          reference then); read under M
  kvm.tdp_mmu_roots       changed under P, read under M or RCU
  root.tdp_mmu_root_count refcount_t
  root.zap_holds_kvm      written by whoever queues the zap, before queue_work;
                          read by the worker (ordered by the queueing)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import ksync
from ksync import Refcount, lockdep_assert_held, rcu

from . import zapper
from .free_sp import still_maps

if TYPE_CHECKING:
    from .kvm import Kvm
    from .vcpu import Vcpu


class Role(NamedTuple):
    """Kernel: union kvm_mmu_page_role, the parts that pick a root (``invalid`` is apart)."""

    level: int = 4
    as_id: int = 0
    smm: bool = False
    guest_mode: bool = False


class Root:
    """A root page table and its reference count.  Kernel: a top-level kvm_mmu_page."""

    __slots__ = ("kvm", "page", "role", "invalid", "tdp_mmu_root_count", "work",
                 "zap_holds_kvm", "scheduled_to_zap", "name", "freed", "__weakref__")

    def __init__(self, kvm: Kvm, role: Role, count: int) -> None:
        kvm.root_seq += 1
        self.name = f"root#{kvm.root_seq}(as{role.as_id},L{role.level})"
        self.kvm = kvm
        self.role = role
        self.invalid = False
        self.page = kvm.alloc.alloc_root(role.level)
        self.tdp_mmu_root_count = Refcount(count, f"{self.name}->tdp_mmu_root_count")
        self.work = kvm.new_zap_work(self) if kvm.zap == "async" else None
        self.zap_holds_kvm = False
        self.scheduled_to_zap = False
        self.freed = False
        ksync.track(self, "struct kvm_mmu_page (root)")

    def __repr__(self) -> str:
        state = "invalid" if self.invalid else "valid"
        return f"<{self.name} {state} count={self.tdp_mmu_root_count.peek()}>"


def assert_mmu_lock_held(kvm: Kvm, shared: bool) -> None:
    """Kernel: kvm_lockdep_assert_mmu_lock_held()."""
    lockdep_assert_held(kvm.mmu_lock, "read" if shared else "write")


def get_root(kvm: Kvm, root: Root) -> bool:
    """Kernel: kvm_tdp_mmu_get_root() — a count that reached zero is never revived."""
    ksync.check_access(root, "tdp_mmu_root_count")
    if kvm.bug("get-root-without-inc-not-zero"):
        root.tdp_mmu_root_count.inc()
        return True
    return root.tdp_mmu_root_count.inc_not_zero()


def put_root(kvm: Kvm, root: Root, shared: bool) -> None:
    """Kernel: kvm_tdp_mmu_put_root().  Context: ``mmu_lock`` held (read if ``shared``).

    The branches, by generation (KERNEL.md):
      sync      last put: unlink, zap the whole root here without yielding
                (nobody can reach it any more, so dropping ``mmu_lock``
                would let a host invalidation miss it), free via RCU;
      async     last put of a valid root: mark it invalid, set the count back
                to one (the zapper's reference), then queue the zap while
                ``users_count`` is non-zero (under ``zap_wq="system"``: if a
                VM reference for the worker can be taken), else zap here
                and put again;
                last put of an invalid root: unlink and free via RCU;
      preserve  the MMU's own reference keeps valid roots, so the last put
                is always of an invalid root (a valid one is a WARN):
                unlink and free via RCU.
    """
    if not kvm.bug("worker-zap-without-mmu-lock"):
        assert_mmu_lock_held(kvm, shared)
    ksync.check_access(root, "tdp_mmu_root_count")
    if not root.tdp_mmu_root_count.dec_and_test():
        return
    if kvm.zap == "sync":
        _unlink_root(kvm, root)
        zapper.tdp_mmu_zap_root(kvm, root, shared, can_yield=False)
        _free_root(kvm, root)
        return
    if kvm.zap == "preserve":
        if not root.invalid:
            kvm.warn(f"{root.name}: last reference put on a valid root")
        _unlink_root(kvm, root)
        _free_root(kvm, root)
        return
    if not root.invalid:
        # Nobody can take a new reference now (inc_not_zero fails), so the
        # invalid bit can be set without the write lock; the count goes back
        # to one and that reference belongs to whoever zaps the root.
        root.invalid = True
        root.tdp_mmu_root_count.set(1)
        ksync.check_access(kvm, "users_count")
        if kvm.bug("zap-on-last-put") and kvm.users_count.peek():
            # The bug (the pre-seed behaviour): the task putting the last
            # reference zaps the whole root itself, without yielding.
            zapper.tdp_mmu_zap_root(kvm, root, shared, can_yield=False)
            if root.tdp_mmu_root_count.dec_and_test():
                _unlink_root(kvm, root)
                _free_root(kvm, root)
            return
        if kvm.owns_zap_wq:
            if kvm.users_count.read() or kvm.bug("no-users-count-check"):
                schedule_zap_root(kvm, root)
                return
        elif _get_kvm_for_zap(kvm, root) or kvm.bug("no-users-count-check"):
            # The bug queues with no VM reference: nothing keeps struct kvm
            # alive until the worker runs, and no flush waits for it.
            schedule_zap_root(kvm, root)
            return
        # The VM is being destroyed and its queue may already be flushed:
        # zap here rather than hand work to a queue nobody will flush.
        kvm.stats.count("inline_zaps")
        zapper.tdp_mmu_zap_root(kvm, root, shared)
        if not root.tdp_mmu_root_count.dec_and_test():
            return
    _unlink_root(kvm, root)
    _free_root(kvm, root)


def _unlink_root(kvm: Kvm, root: Root) -> None:
    """Kernel: list_del_rcu(&root->link) under tdp_mmu_pages_lock."""
    with kvm.tdp_mmu_pages_lock:
        ksync.check_access(kvm, "tdp_mmu_roots", write=True)
        kvm.tdp_mmu_roots.remove(root)


def _free_root(kvm: Kvm, root: Root) -> None:
    """Free the root page after a grace period (kernel: call_rcu(tdp_mmu_free_sp_rcu_callback))."""
    kvm.stats.count("roots_freed")
    ksync.call_rcu(_free_root_rcu, kvm, root)


def _free_root_rcu(kvm: Kvm, root: Root) -> None:
    """Kernel: tdp_mmu_free_sp_rcu_callback() for a root."""
    if still_maps(root.page):
        kvm.warn(f"{root.name} freed while it still maps memory")
    root.freed = True
    kvm.stats.count("roots_rcu_freed")
    ksync.kfree(root)


def _get_kvm_for_zap(kvm: Kvm, root: Root) -> bool:
    """A VM reference for the zap worker on system_wq (kernel, the seed's first
    version: kvm_get_kvm_safe() before queueing).  False: the VM is being destroyed."""
    root.zap_holds_kvm = kvm.get_safe()
    return root.zap_holds_kvm


def schedule_zap_root(kvm: Kvm, root: Root) -> None:
    """Kernel: tdp_mmu_schedule_zap_root() — hand the zap to the VM's work queue."""
    kvm.stats.count("zaps_queued")
    if not kvm.queue_zap_work(root):
        # Queued twice means two owners for one reference (invariant 8).
        kvm.warn(f"{root.name}: zap queued while already pending")


def tdp_mmu_zap_root_work(kvm: Kvm, root: Root) -> None:
    """The zap worker.  Kernel: tdp_mmu_zap_root_work().

    It owns exactly one reference to ``root`` (invariant 8), the one
    put_root set back or invalidate_all_roots took.  No TLB flush is needed here:
    a vCPU flushes its TLB when it loads a new root, and every vCPU that
    still uses this one has been asked to drop it.  Under ``zap_wq="system"``
    it also owns a VM reference and puts it last (kernel: kvm_put_kvm() at
    the end of the first version's worker), which may destroy the VM here.
    """
    # Read before the put: the root may be freed once its reference is gone.
    holds_kvm = root.zap_holds_kvm
    root.zap_holds_kvm = False
    ksync.check_access(kvm, "mmu_lock")
    if kvm.bug("worker-zap-without-mmu-lock"):
        zapper.tdp_mmu_zap_root(kvm, root, True)
        put_root(kvm, root, True)
    else:
        kvm.mmu_lock.read_lock()
        try:
            zapper.tdp_mmu_zap_root(kvm, root, True)
            put_root(kvm, root, True)
        finally:
            kvm.mmu_lock.read_unlock()
    if holds_kvm:
        kvm.put()


def next_root(kvm: Kvm, prev: Root | None, shared: bool, only_valid: bool) -> Root | None:
    """Kernel: tdp_mmu_next_root() — take a reference to the next root, put ``prev``."""
    lockdep_assert_held(kvm.mmu_lock)
    with rcu:
        roots = kvm.tdp_mmu_roots
        i = 0 if prev is None else _index_after(roots, prev)
        nxt = None
        while i < len(roots):
            r = roots[i]
            if (not only_valid or not r.invalid) and get_root(kvm, r):
                nxt = r
                break
            i += 1
    if prev is not None:
        if kvm.bug("root-not-freed-after-yield"):
            # The bug (5.11): a bare decrement.  If the walker held the last
            # reference nobody frees the root: it stays listed at count zero.
            prev.tdp_mmu_root_count.dec_and_test()
        else:
            put_root(kvm, prev, shared)
    return nxt


def _index_after(roots: list[Root], prev: Root) -> int:
    # An unlinked prev is where the kernel's RCU list walk would continue
    # from its stale next pointer; here, from the next live root after it.
    for i, r in enumerate(roots):
        if r is prev:
            return i + 1
    return len(roots)


def for_each_root_yield_safe(kvm: Kvm, shared: bool, only_valid: bool = False,
                             as_id: int | None = None):
    """Kernel: for_each_tdp_mmu_root_yield_safe() — a reference is held on each yielded root.

    Leaving the loop early leaks the current root's reference, as in the kernel.
    """
    root = next_root(kvm, None, shared, only_valid)
    while root is not None:
        if as_id is None or root.role.as_id == as_id:
            yield root
        root = next_root(kvm, root, shared, only_valid)


def get_vcpu_root(vcpu: Vcpu) -> Root:
    """Kernel: kvm_tdp_mmu_get_vcpu_root_hpa().  Context: ``mmu_lock`` held for write.

    Reuses a valid root with the same role by taking a reference, else
    allocates one (count 1; 2 under ``preserve``, the MMU's own reference).
    """
    kvm = vcpu.kvm
    role = vcpu.root_role()
    assert_mmu_lock_held(kvm, shared=False)
    for root in list(kvm.tdp_mmu_roots):
        reusable = root.role == role and (not root.invalid or kvm.bug("reuse-invalid-root"))
        if reusable and get_root(kvm, root):
            kvm.stats.count("roots_reused")
            return root
    root = Root(kvm, role, 2 if kvm.zap == "preserve" else 1)
    with kvm.tdp_mmu_pages_lock:
        ksync.check_access(kvm, "tdp_mmu_roots", write=True)
        kvm.tdp_mmu_roots.insert(0, root)       # list_add_rcu: at the head
    kvm.stats.count("roots_allocated")
    return root


def invalidate_all_roots(kvm: Kvm) -> None:
    """Kernel: kvm_tdp_mmu_invalidate_all_roots().

    Context: ``mmu_lock`` held for write, or the VM is being destroyed.
    vCPUs still on a root keep their references and are asked to drop
    obsolete roots before their next guest entry.
    """
    if kvm.users_count.peek():
        assert_mmu_lock_held(kvm, shared=False)
    for root in list(kvm.tdp_mmu_roots):
        if root.invalid:
            continue
        if kvm.zap == "preserve":
            root.invalid = True
            root.scheduled_to_zap = True     # the MMU's reference goes with the zap
            continue
        # A listed valid root always has a reference: its last put, under
        # mmu_lock (held here for write), unlinks it or marks it invalid.
        if not get_root(kvm, root):
            kvm.warn(f"{root.name}: valid root with no reference in invalidate_all_roots")
            continue
        root.invalid = True
        if kvm.zap == "async":
            # Same rule as put_root: a zap on system_wq holds a VM reference.
            # Callers hold one themselves (an ioctl's file descriptor), so
            # failing to take it means a caller broke that rule.
            if not kvm.owns_zap_wq and not _get_kvm_for_zap(kvm, root):
                kvm.warn(f"{root.name}: invalidate_all_roots on a VM being destroyed")
            schedule_zap_root(kvm, root)
        else:
            kvm.sync_invalidated.append(root)


def zap_invalidated_roots(kvm: Kvm) -> None:
    """Kernel: kvm_tdp_mmu_zap_invalidated_roots().

    ``async``: flush the zap queue — never with ``mmu_lock`` held, since the
    worker needs it.  Under ``zap_wq="system"`` that is system_wq, the queue
    the seed's first version put its zaps on (flush_work on each root's
    work would need the invalidated roots listed; flushing the queue used
    is what that version did).  ``sync`` and ``preserve``: the caller zaps each
    invalidated root itself under the read lock.
    """
    if kvm.zap == "async":
        kvm.flush_zap_queue()
        return
    kvm.mmu_lock.read_lock()
    try:
        if kvm.zap == "sync" and kvm.bug("zap-invalidated-assumes-reference"):
            # The bug (the latent 5.17 issue): every invalid root is taken to
            # hold a reference gifted by the invalidation, even one invalidated
            # by an earlier fast zap whose gift was already put.
            kvm.sync_invalidated.clear()
            for root in [r for r in kvm.tdp_mmu_roots if r.invalid]:
                zapper.tdp_mmu_zap_root(kvm, root, True)
                put_root(kvm, root, True)
            return
        if kvm.zap == "sync":
            while kvm.sync_invalidated:
                root = kvm.sync_invalidated.pop(0)
                zapper.tdp_mmu_zap_root(kvm, root, True)
                put_root(kvm, root, True)
            return
        # Every address space: an SMM root holds the MMU's reference too.
        as_id = 0 if kvm.bug("root-iter-filters-address-space") else None
        for root in for_each_root_yield_safe(kvm, shared=True, as_id=as_id):
            if not root.scheduled_to_zap:
                continue
            root.scheduled_to_zap = False
            zapper.tdp_mmu_zap_root(kvm, root, True)
            put_root(kvm, root, True)          # the MMU's own reference
    finally:
        kvm.mmu_lock.read_unlock()
