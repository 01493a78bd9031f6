"""``max_guest_memory``: a big 4K-populated root dropped by a vCPU while the host invalidates.

Selftest counterpart: tools/testing/selftests/kvm/max_guest_memory_test.c,
whose vCPUs fill guest memory with 4K mappings before the memory goes away
— the case behind the seed (the vCPU that drops the last reference to such
a root was blocked for the whole zap).  Here vCPU 0's root is filled with
``pages_per_gib`` 4K SPTEs in each of ``gib`` GiB (one bulk store per leaf
page: what the guest's earlier writes left behind); vCPU 0 then reloads its
MMU, dropping that root, while vCPUs running a nested guest (their own
roots) fault and a host thread unmaps small ranges.  The zap of the big root
(by vCPU 0 under ``sync``, by the worker under ``async``, at teardown under
``preserve``) then meets a writer on ``mmu_lock`` at its 1G steps, which is
where it must yield.
"""

from __future__ import annotations

import ksync

from ..kvm import Kvm
from ..mmu import mmu_notifier_invalidate_range, set_memory_region
from ..pagetable import populate_4k
from ._common import check_positive, run_all, scenario_rng
from .registry import scenario

GIB_PAGES = 1 << 18     # 4K pages in 1 GiB
UNMAP_PAGES = 16    # what the host takes back at once: small, so vCPUs seldom retry


def prefault_4k(kvm: Kvm, vcpu, slot, pages_per_gib: int, writable: bool = True) -> int:
    """Map the first ``pages_per_gib`` pages of each GiB of ``slot`` in ``vcpu``'s root, 4K each.

    Context: ``mmu_lock`` taken here for write (populate uses plain stores).
    Like a fault, it keeps off host memory that an mmu notifier is
    invalidating or has taken back (kernel: the mmu_invalidate_seq check):
    such GiBs are left to the guest's faults.  ``writable=False`` leaves
    them write-protected, as dirty logging does.  Returns the SPTEs written.
    """
    n = 0
    kvm.mmu_lock.write_lock()
    try:
        if kvm.mmu_invalidate_in_progress:
            return 0
        taken = [gfn for sid, gfn in kvm.host.remap if sid == slot.id]
        for g in range(slot.base_gfn, slot.end_gfn, GIB_PAGES):
            cnt = min(pages_per_gib, slot.end_gfn - g)
            if any(g <= gfn < g + cnt for gfn in taken):
                continue
            n += populate_4k(vcpu.root.page, g, cnt, kvm.host.gfn_to_pfn(slot, g), writable,
                             kvm.alloc)
    finally:
        kvm.mmu_lock.write_unlock()
    return n


@scenario("max_guest_memory", "a big 4K-populated root dropped by a vCPU while the host unmaps",
          vcpus=2, gib=16, pages_per_gib=512, invalidations=3, variant=0,
          unmap_pages=UNMAP_PAGES)
def max_guest_memory(*, zap: str, bugs: frozenset[str], vcpus: int, gib: int,
                     pages_per_gib: int, invalidations: int, variant: int,
                     unmap_pages: int) -> None:
    """``unmap_pages`` is the size of each host unmap: past 512 it crosses a 2M
    boundary, where the unmap's zap may yield mmu_lock."""
    check_positive("max_guest_memory", vcpus=vcpus, gib=gib, pages_per_gib=pages_per_gib,
                   invalidations=invalidations, unmap_pages=unmap_pages)
    if pages_per_gib > GIB_PAGES:
        raise ValueError(f"scenario max_guest_memory: pages_per_gib={pages_per_gib} exceeds "
                         f"the {GIB_PAGES} pages of a GiB")
    rng = scenario_rng("max_guest_memory", variant)
    kvm = Kvm(zap=zap, bugs=bugs)
    slot = set_memory_region(kvm, 0, 0, gib * GIB_PAGES)
    big = kvm.create_vcpu()
    big.mmu_load()
    prefault_4k(kvm, big, slot, pages_per_gib)
    probes = [g * GIB_PAGES + rng.randrange(pages_per_gib) for g in range(gib)]
    dropping = ksync.Completion("vcpu-0 drops its root")
    jobs = [(_drop_big_root, (big, probes, dropping), big.name)]
    for _ in range(1, vcpus):
        # A nested guest's vCPU has its own root role: its faults share
        # mmu_lock with the zap but never the big root.
        v = kvm.create_vcpu(guest_mode=True)
        start = rng.randrange(gib) * GIB_PAGES + pages_per_gib
        jobs.append((v.run, ([("touch", start, 8, True), ("sleep", 0.01),
                              ("touch", start, 8, False)],), v.name))
    ranges = []
    for _ in range(invalidations):
        g = rng.randrange(gib) * GIB_PAGES + rng.randrange(pages_per_gib)
        ranges.append((rng.randrange(8) * 0.002, g, g + unmap_pages))
    jobs.append((_host_unmaps, (kvm, dropping, ranges), "host"))
    run_all(jobs)
    kvm.destroy()


def _drop_big_root(vcpu, probes: list[int], dropping: ksync.Completion) -> None:
    """vCPU 0: use the big root, drop it (a reload), then fault on the new one."""
    for gfn in probes:
        vcpu.access(gfn, write=True)
    dropping.complete()
    vcpu.reload()
    for gfn in probes:
        vcpu.access(gfn)


def _host_unmaps(kvm: Kvm, dropping: ksync.Completion,
                 ranges: list[tuple[float, int, int]]) -> None:
    """The host reclaiming a little guest memory while the big root goes (an mmu notifier unmap)."""
    dropping.wait()
    for delay_ms, start, end in ranges:
        if delay_ms:
            ksync.msleep(delay_ms)
        mmu_notifier_invalidate_range(kvm, 0, start, end)


def stall_bound(gib: int, pages_per_gib: int) -> int:
    """Steps a reader may keep ``mmu_lock`` while a writer waits, in a correct model.

    Tearing the whole populated tree down costs about one scheduling step
    per page-table page freed: ``gib * (pages_per_gib / 512 + 1)``.  A zap
    that yields gives the lock up after one 1G subtree once a writer
    waits, far below that; one that does not yield (or cannot, zapping in
    one pass) makes the writer wait for the rest of the zap.
    """
    return gib * (-(-pages_per_gib // 512) + 1)
