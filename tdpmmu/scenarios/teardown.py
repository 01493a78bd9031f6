"""``teardown``: the VM destroyed while root zaps are still queued or running.

Selftest counterpart: the exit path of every selftest (``kvm_vm_free``
closing the vCPU and VM file descriptors while the last work may still be
in flight), and the seed's rule that ``kvm_mmu_uninit_tdp_mmu`` flushes
the zap queue before ``struct kvm`` is freed.  Each vCPU thread holds a VM
reference (its file descriptor), runs on a root role of its own that it
fills with 4K mappings across ``gib`` GiB, reloads (the last put of that
root: under ``async`` a queued zap long enough to outlast a grace period)
and closes its reference.  The creator and a host thread drop theirs at
seeded moments; whoever drops the last reference destroys the VM, often
while those zaps are still queued or running.

``root_level=5`` gives the VM 5-level paging, where a top-level entry
reaches past a 46-bit host's physical address space (the case behind
``zap-all-skips-top-level-sptes``).

``zap_wq="system"`` (async only) runs the seed's first version, whose zaps
go to system_wq, each holding a VM reference: there the last reference
may be the zap worker's, and the VM is destroyed on a kworker.
"""

from __future__ import annotations

import ksync

from ..kvm import Kvm
from ..mmu import mmu_notifier_invalidate_range, set_memory_region
from ._common import check_positive, run_all, scenario_rng
from .max_guest_memory import GIB_PAGES, prefault_4k
from .registry import scenario


@scenario("teardown", "the VM destroyed while root zaps are still queued",
          vcpus=2, gib=8, pages_per_gib=512, variant=0, zap_wq="kvm", root_level=4, unmap_pages=4,
          unmap_offset=0)
def teardown(*, zap: str, bugs: frozenset[str], vcpus: int, gib: int,
             pages_per_gib: int, variant: int, zap_wq: str, root_level: int,
             unmap_pages: int, unmap_offset: int) -> None:
    """``vcpus`` vCPUs with distinct root roles fill their root, reload and close
    their VM reference; the last put destroys the VM.  ``root_level`` 5 runs the
    VM with 5-level paging (one top-level entry then spans 256 TiB); the host
    unmaps ``unmap_pages`` pages from ``unmap_offset`` pages into a GiB (a
    range across a 2M boundary, such as 8 pages from 508, lets the unmap's
    zap yield between the two 2M regions)."""
    check_positive("teardown", vcpus=vcpus, gib=gib, pages_per_gib=pages_per_gib,
                   unmap_pages=unmap_pages)
    if not isinstance(unmap_offset, int) or not 0 <= unmap_offset < GIB_PAGES:
        raise ValueError(f"scenario teardown: unmap_offset={unmap_offset!r} must be in "
                         f"[0, {GIB_PAGES})")
    rng = scenario_rng("teardown", variant)
    kvm = Kvm(zap=zap, bugs=bugs, zap_wq=zap_wq, root_level=root_level)
    slots = {as_id: set_memory_region(kvm, 0, 0, gib * GIB_PAGES, as_id=as_id)
             for as_id in (0, 1)}
    jobs = []
    for i in range(vcpus):
        # Alternate SMM and nested-guest roles so that each vCPU has a root
        # of its own: its reload is the last put of that root.
        v = kvm.create_vcpu(smm=bool(i & 1), guest_mode=bool(i & 2), as_id=i & 1)
        kvm.get()                     # the vCPU's file descriptor
        probe = rng.randrange(gib) * GIB_PAGES + rng.randrange(min(pages_per_gib, GIB_PAGES))
        jobs.append((_vcpu_then_close, (kvm, v, slots[v.as_id], pages_per_gib, probe), v.name))
    kvm.get()                         # the host's mmu notifier registration
    start = rng.randrange(gib) * GIB_PAGES
    start = start + unmap_offset
    jobs.append((_host_unmap_then_close, (kvm, start, start + unmap_pages,
                                          rng.randrange(4) * 0.005), "host"))
    jobs.append((_close_vm_fd, (kvm, rng.randrange(4) * 0.005), "close-vm"))
    run_all(jobs)


def _vcpu_then_close(kvm: Kvm, vcpu, slot, pages_per_gib: int, probe: int) -> None:
    """A vCPU: load and fill its root, touch it, reload last, then close its file descriptor."""
    vcpu.enter_guest()
    prefault_4k(kvm, vcpu, slot, pages_per_gib)
    vcpu.access(probe, write=True)
    vcpu.reload()                     # its zap is the one most likely still queued
    kvm.put()                         # close(vcpu_fd): may destroy the VM here


def _host_unmap_then_close(kvm: Kvm, start: int, end: int, delay_ms: float) -> None:
    ksync.msleep(delay_ms)
    mmu_notifier_invalidate_range(kvm, 0, start, end)
    kvm.put()                         # mmu_notifier_unregister


def _close_vm_fd(kvm: Kvm, delay_ms: float) -> None:
    ksync.msleep(delay_ms)
    kvm.destroy()                     # close(vm_fd)
