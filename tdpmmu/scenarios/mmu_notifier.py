"""``mmu_notifier``: host invalidations of gfn ranges racing zaps, faults and lockless walks.

Selftest counterparts: tools/testing/selftests/kvm/access_tracking_perf_test.c
and the mmu-notifier paths that memslot_perf_test drives — the host
reclaims guest memory (``kvm_mmu_notifier_invalidate_range_start/end``)
while vCPUs fault and walk their roots without a lock, and while a memslot
change has just invalidated every root (so some vCPU may still run on an
invalid one, whose zap is queued).  The slot logs dirty pages, so mappings
are 4K and a write after a read is a lockless fast page fault; the zaps of
invalidated roots tear page tables down under those lockless walkers.
"""

from __future__ import annotations

import ksync

from ..kvm import Kvm
from ..memslot import KVM_MEM_LOG_DIRTY_PAGES
from ..mmu import mmu_notifier_invalidate_range, set_memory_region
from . import scenario
from ._common import check_positive, run_all, scenario_rng

HUGE_2M = 512
UNMAP_PAGES = 8      # small: each freed host page is an object the checkers watch


@scenario("mmu_notifier", "host unmaps of gfn ranges racing zaps, faults and lockless walks",
          vcpus=2, regions=2, touches=3, unmaps=4, flips=2)
def mmu_notifier(*, zap: str, bugs: frozenset[str], vcpus: int, regions: int, touches: int,
                 unmaps: int, flips: int) -> None:
    """Slot 0 spans ``regions`` 2M regions; each vCPU reads then writes ``touches`` pages
    in each, twice; the host unmaps ``UNMAP_PAGES`` around a touched page ``unmaps``
    times; a memslot thread deletes and re-creates slot 1 ``flips`` times, each
    invalidating every root (whose zaps free page tables under lockless walkers)."""
    check_positive("mmu_notifier", vcpus=vcpus, regions=regions, touches=touches,
                   unmaps=unmaps, flips=flips)
    rng = scenario_rng("mmu_notifier")
    kvm = Kvm(zap=zap, bugs=bugs)
    set_memory_region(kvm, 0, 0, regions * HUGE_2M, KVM_MEM_LOG_DIRTY_PAGES)
    scratch = regions * HUGE_2M + HUGE_2M
    set_memory_region(kvm, 1, scratch, 16)
    jobs = []
    for _ in range(vcpus):
        v = kvm.create_vcpu()
        gfns = [r * HUGE_2M + rng.randrange(HUGE_2M) for r in range(regions)
                for _ in range(touches)]
        jobs.append((_vcpu, (v, gfns), v.name))
    touched = [g for j in jobs for g in j[1][1]]
    plan = [(rng.randrange(6) * 0.005, rng.choice(touched) & ~(UNMAP_PAGES - 1))
            for _ in range(unmaps)]
    jobs.append((_host_unmaps, (kvm, plan), "host"))
    gaps = [rng.randrange(1, 6) * 0.005 for _ in range(flips)]
    jobs.append((_slot_flips, (kvm, scratch, gaps), "memslots"))
    run_all(jobs)
    kvm.destroy()


def _vcpu(vcpu, gfns: list[int]) -> None:
    """Read then write each page twice: faults, TLB hits, fast page faults on write-protected 4K SPTEs."""
    for _ in range(2):
        for gfn in gfns:
            vcpu.access(gfn)
            vcpu.access(gfn, write=True)


def _host_unmaps(kvm: Kvm, plan: list[tuple[float, int]]) -> None:
    """The host reclaiming a few pages the guest uses (mmu notifier unmap)."""
    for delay_ms, start in plan:
        ksync.msleep(delay_ms)
        mmu_notifier_invalidate_range(kvm, 0, start, start + UNMAP_PAGES)


def _slot_flips(kvm: Kvm, base: int, gaps: list[float]) -> None:
    """Delete and re-create a small slot: each delete's fast zap invalidates every root."""
    for delay_ms in gaps:
        ksync.msleep(delay_ms)
        set_memory_region(kvm, 1, base, 0)
        set_memory_region(kvm, 1, base, 16)
