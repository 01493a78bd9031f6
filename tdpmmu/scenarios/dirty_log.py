"""``dirty_log``: dirty logging switched on, harvested and switched off while vCPUs write.

Selftest counterpart: tools/testing/selftests/kvm/dirty_log_perf_test.c —
vCPUs write their own part of guest memory over and over; the main thread
enables KVM_MEM_LOG_DIRTY_PAGES (huge mappings are split and every SPTE
write-protected, under ``mmu_lock`` for read), collects and clears the log
a few times (write-protecting again), then disables logging.  The writes
after each harvest are fast page faults: lockless walks under RCU only,
racing the splits' page-table changes.
"""

from __future__ import annotations

import ksync

from ..kvm import Kvm
from ..memslot import KVM_MEM_LOG_DIRTY_PAGES
from ..mmu import get_dirty_log, set_memory_region
from ._common import check_positive, run_all, scenario_rng
from .registry import scenario

HUGE_2M = 512


@scenario("dirty_log", "dirty logging toggled and harvested while vCPUs write",
          vcpus=2, pages=512, stride=64, iterations=3, variant=0)
def dirty_log(*, zap: str, bugs: frozenset[str], vcpus: int, pages: int, stride: int,
              iterations: int, variant: int) -> None:
    """Each vCPU owns ``pages`` pages (2M-aligned, so they start huge) and writes
    every ``stride``-th one per pass; ``iterations`` harvests of the log."""
    check_positive("dirty_log", vcpus=vcpus, pages=pages, stride=stride, iterations=iterations)
    rng = scenario_rng("dirty_log", variant)
    kvm = Kvm(zap=zap, bugs=bugs)
    span = -(-pages // HUGE_2M) * HUGE_2M
    set_memory_region(kvm, 0, 0, vcpus * span)
    jobs = []
    for i in range(vcpus):
        v = kvm.create_vcpu()
        # A random phase per vCPU so that writes and harvests interleave differently per seed.
        first = i * span + rng.randrange(stride)
        program = [("touch", first, pages - (first - i * span), True, stride)
                   for _ in range(iterations + 2)]
        jobs.append((v.run, (program,), v.name))
    jobs.append((_log_dirty, (kvm, iterations, rng.randrange(1, 4) * 0.01), "dirty-log"))
    run_all(jobs)
    kvm.destroy()


def _log_dirty(kvm: Kvm, iterations: int, gap_ms: float) -> None:
    """Userspace's side of the test: enable logging, harvest, disable (KVM_SET_USER_MEMORY_REGION
    and KVM_GET_DIRTY_LOG/KVM_CLEAR_DIRTY_LOG)."""
    slot = kvm.memslots[0].get(0)
    set_memory_region(kvm, 0, slot.base_gfn, slot.npages, KVM_MEM_LOG_DIRTY_PAGES)
    for _ in range(iterations):
        ksync.msleep(gap_ms)
        get_dirty_log(kvm, 0)
    set_memory_region(kvm, 0, slot.base_gfn, slot.npages, 0)
