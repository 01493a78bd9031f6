"""``mmu_notifier``: host invalidations of gfn ranges racing zaps, faults and lockless walks.

Selftest counterparts: tools/testing/selftests/kvm/access_tracking_perf_test.c
and the mmu-notifier paths that memslot_perf_test drives — the host
reclaims guest memory (``kvm_mmu_notifier_invalidate_range_start/end``)
while vCPUs fault and walk their root without a lock, and while a memslot
change has just invalidated every root, whose zap (by the worker under
``async``) is still under way.  The vCPUs' root is filled with
write-protected 4K mappings across ``gib`` GiB (as dirty logging leaves
them), so each write is a lockless fast page fault; the zap of that root
tears page tables down 1G at a time, yielding to the host's unmaps, which
may hit a GiB the zap has not reached yet.
"""

from __future__ import annotations

import ksync

from ..kvm import Kvm
from ..memslot import KVM_MEM_LOG_DIRTY_PAGES
from ..mmu import mmu_notifier_invalidate_range, set_memory_region
from ._common import check_positive, run_all, scenario_rng
from .max_guest_memory import GIB_PAGES, prefault_4k
from .registry import scenario

#: Pages one host unmap takes back by default: small, since each freed host
#: page is an object the checkers watch.  ``unmap_pages`` of 1024 spans two
#: 2M regions, so the unmap's zap reaches a point where it may yield.
UNMAP_PAGES = 8


@scenario("mmu_notifier", "host unmaps of gfn ranges racing zaps, faults and lockless walks",
          vcpus=2, gib=4, pages_per_gib=512, touches=3, unmaps=3, flips=1, variant=0,
          unmap_pages=UNMAP_PAGES)
def mmu_notifier(*, zap: str, bugs: frozenset[str], vcpus: int, gib: int, pages_per_gib: int,
                 touches: int, unmaps: int, flips: int, variant: int, unmap_pages: int) -> None:
    """Slot 0 spans ``gib`` GiB, ``pages_per_gib`` of each mapped 4K read-only up front;
    each vCPU reads then writes ``touches`` of those pages per GiB; the host unmaps
    ``unmap_pages`` around a mapped page ``unmaps`` times; a memslot thread deletes and
    re-creates slot 1 ``flips`` times, each invalidating every root."""
    check_positive("mmu_notifier", vcpus=vcpus, gib=gib, pages_per_gib=pages_per_gib,
                   touches=touches, unmaps=unmaps, flips=flips, unmap_pages=unmap_pages)
    rng = scenario_rng("mmu_notifier", variant)
    kvm = Kvm(zap=zap, bugs=bugs)
    slot = set_memory_region(kvm, 0, 0, gib * GIB_PAGES, KVM_MEM_LOG_DIRTY_PAGES)
    scratch = gib * GIB_PAGES
    set_memory_region(kvm, 1, scratch, 16)
    mapped = min(pages_per_gib, GIB_PAGES)
    vcpus_ = [kvm.create_vcpu() for _ in range(vcpus)]
    for v in vcpus_:
        v.mmu_load()                  # one role: every vCPU shares the root
    prefault_4k(kvm, vcpus_[0], slot, mapped, writable=False)
    jobs = []
    for v in vcpus_:
        gfns = [g * GIB_PAGES + rng.randrange(mapped) for g in range(gib)
                for _ in range(touches)]
        rng.shuffle(gfns)
        jobs.append((_vcpu, (v, gfns), v.name))
    plan = [(rng.randrange(1, 8) * 0.005,
             rng.randrange(gib) * GIB_PAGES + rng.randrange(mapped) // unmap_pages * unmap_pages)
            for _ in range(unmaps)]
    jobs.append((_host_unmaps, (kvm, plan, unmap_pages), "host"))
    gaps = [rng.randrange(1, 6) * 0.005 for _ in range(flips)]
    jobs.append((_slot_flips, (kvm, scratch, gaps), "memslots"))
    run_all(jobs)
    kvm.destroy()


def _vcpu(vcpu, gfns: list[int]) -> None:
    """Read then write each page: TLB hits, then fast page faults on write-protected SPTEs."""
    for gfn in gfns:
        vcpu.access(gfn)
        vcpu.access(gfn, write=True)


def _host_unmaps(kvm: Kvm, plan: list[tuple[float, int]], npages: int) -> None:
    """The host reclaiming a few pages the guest uses (mmu notifier unmap)."""
    for delay_ms, start in plan:
        ksync.msleep(delay_ms)
        mmu_notifier_invalidate_range(kvm, 0, start, start + npages)


def _slot_flips(kvm: Kvm, base: int, gaps: list[float]) -> None:
    """Delete and re-create a small slot: each delete's fast zap invalidates every root."""
    for delay_ms in gaps:
        ksync.msleep(delay_ms)
        set_memory_region(kvm, 1, base, 0)
        set_memory_region(kvm, 1, base, 16)
