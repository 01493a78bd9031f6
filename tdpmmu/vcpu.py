"""struct kvm_vcpu: loading and unloading the MMU, requests, guest accesses.

Kernel counterpart: ``kvm_mmu_load``/``kvm_mmu_unload``,
``kvm_mmu_free_obsolete_roots`` (arch/x86/kvm/mmu/mmu.c), the request bits
checked in ``vcpu_enter_guest`` (arch/x86/kvm/x86.c) and the vCPU's
``mode`` handshake that lets ``kvm_make_all_cpus_request(..., WAIT)`` and
remote TLB flushes wait until a vCPU has left guest mode.

Guest mode is modelled by ``mode_lock``, held while the vCPU runs one guest
access: a requester that must wait for the vCPU to leave guest mode takes
and drops it.  Requests are an atomic bit mask (``vcpu->requests``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import ksync

from . import fault
from .root import Role, get_vcpu_root, put_root

if TYPE_CHECKING:
    from .kvm import Kvm

KVM_REQ_TLB_FLUSH = 1 << 0
KVM_REQ_MMU_FREE_OBSOLETE_ROOTS = 1 << 1
KVM_REQ_MMU_RELOAD = 1 << 2

#: A fault that keeps being retried means the model is broken, not a slow guest.
_MAX_FAULT_RETRIES = 10_000


class Vcpu:
    """One vCPU.  ``run(program)`` executes guest operations on the calling thread."""

    def __init__(self, kvm: Kvm, vcpu_id: int, as_id: int = 0, smm: bool = False,
                 guest_mode: bool = False) -> None:
        self.kvm = kvm
        self.id = vcpu_id
        self.name = f"vcpu-{vcpu_id}"
        self.as_id = as_id
        self.smm = smm
        self.guest_mode = guest_mode
        self.root: Any = None
        self.root_gen = -1
        self.requests = ksync.Atomic(0, f"{self.name}->requests")
        self.mode_lock = ksync.SpinLock("vcpu->mode")
        self.tlb: dict[int, tuple[int, bool]] = {}
        self.accesses = 0
        ksync.track(self, "struct kvm_vcpu")

    def __repr__(self) -> str:
        return f"<Vcpu {self.id} root={self.root!r}>"

    def root_role(self) -> Role:
        return Role(self.kvm.root_level, self.as_id, self.smm, self.guest_mode)

    # ---------------------------------------------------------------- MMU
    def mmu_load(self) -> None:
        """Kernel: kvm_mmu_load() -> mmu_alloc_direct_roots(), under mmu_lock for write."""
        kvm = self.kvm
        t0 = time.perf_counter_ns()
        kvm.mmu_lock.write_lock()
        try:
            self.root = get_vcpu_root(self)
            self.root_gen = kvm.mmu_valid_gen
            if self.root.invalid:
                # Invariant 3: a role lookup never hands out an invalid root.
                kvm.warn(f"{self.name} loaded invalid root {self.root.name}")
        finally:
            kvm.mmu_lock.write_unlock()
        self.tlb.clear()      # a new root is loaded with a local TLB flush
        kvm.stats.note_block(self.name, "mmu_load", time.perf_counter_ns() - t0)

    def mmu_unload(self) -> None:
        """Kernel: kvm_mmu_unload() -> kvm_mmu_free_roots(), under mmu_lock for read.

        The time spent here is the vCPU's block time: under ``zap="sync"``
        (and during teardown) it includes zapping the root.
        """
        root = self.root
        if root is None:
            return
        kvm = self.kvm
        t0 = time.perf_counter_ns()
        kvm.mmu_lock.read_lock()
        try:
            self.root = None
            self.tlb.clear()
            put_root(kvm, root, shared=True)
        finally:
            kvm.mmu_lock.read_unlock()
        kvm.stats.note_block(self.name, "mmu_unload", time.perf_counter_ns() - t0)

    def reload(self) -> None:
        """Drop the current root and load one again (kernel: KVM_REQ_MMU_RELOAD)."""
        self.mmu_unload()
        self.mmu_load()

    def free_obsolete_roots(self) -> None:
        """Kernel: kvm_mmu_free_obsolete_roots()."""
        root = self.root
        if root is not None and (root.invalid or self.root_gen != self.kvm.mmu_valid_gen):
            self.mmu_unload()

    # ---------------------------------------------------------------- requests
    def make_request(self, req: int) -> None:
        """Kernel: kvm_make_request() plus the kick that waits for guest exit."""
        old = self.requests.read()
        while not old & req:        # set_bit(): a compare-exchange loop, never an add
            seen = self.requests.cmpxchg(old, old | req)
            if seen == old:
                break
            old = seen
        with self.mode_lock:       # the vCPU is out of guest mode once we get this
            pass

    def check_requests(self) -> None:
        """Handle pending requests before entering the guest (vcpu_enter_guest)."""
        reqs = self.requests.xchg(0)
        if reqs & KVM_REQ_MMU_FREE_OBSOLETE_ROOTS:
            self.free_obsolete_roots()
        if reqs & KVM_REQ_MMU_RELOAD:
            self.mmu_unload()
        if reqs & KVM_REQ_TLB_FLUSH:
            self.tlb.clear()

    def enter_guest(self) -> None:
        self.check_requests()
        if self.root is None:
            self.mmu_load()

    # ---------------------------------------------------------------- guest
    def access(self, gfn: int, write: bool = False) -> bool:
        """One guest access to ``gfn``; faults until it maps.  False for MMIO (no memslot)."""
        kvm = self.kvm
        for _ in range(_MAX_FAULT_RETRIES):
            self.enter_guest()
            with self.mode_lock:
                if self.requests.peek():
                    continue                  # kicked: exit and handle the request
                hit = self.tlb.get(gfn) or fault.translate(self, gfn)
                if hit is not None and (hit[1] or not write):
                    self.tlb[gfn] = hit
                    kvm.host.access(hit[0], gfn, write)
                    self.accesses += 1
                    return True
            # The CPU drops the faulting translation from its TLB, so a stale
            # read-only entry cannot make the access fault forever.
            self.tlb.pop(gfn, None)
            if hit is not None and write and fault.fast_page_fault(self, gfn):
                continue
            t0 = time.perf_counter_ns()
            res = fault.page_fault(self, gfn, write)
            kvm.stats.note_block(self.name, "page_fault", time.perf_counter_ns() - t0)
            if res == fault.MMIO:
                return False
        raise RuntimeError(f"{self.name}: gfn {gfn:#x} still faulting after "
                           f"{_MAX_FAULT_RETRIES} retries (root {self.root!r})")

    def touch(self, start: int, npages: int, write: bool = False, stride: int = 1) -> int:
        """Access [start, start + npages) every ``stride`` pages; returns accesses made."""
        n = 0
        for gfn in range(start, start + npages, stride):
            n += self.access(gfn, write)
        return n

    def run(self, program: Iterable[tuple]) -> None:
        """Run guest operations: ("touch", start, npages, write), ("reload",), ("sleep", ms)."""
        for op in program:
            kind = op[0]
            if kind == "touch":
                self.touch(*op[1:])
            elif kind == "reload":
                self.reload()
            elif kind == "sleep":
                ksync.msleep(op[1])
            else:
                raise ValueError(f"{self.name}: unknown guest operation {op!r}")
