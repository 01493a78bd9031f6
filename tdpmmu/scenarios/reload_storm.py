"""``root_reload_storm``: vCPUs reloading their MMU over and over while roots are walked.

Selftest counterpart: none directly; it is the pattern behind the seed's
report (a vCPU that drops the last reference to a root pays for its zap)
and the reason get_root must never revive a root whose count hit zero.
Every reload puts the vCPU's root under ``mmu_lock`` for read and loads one
again under it for write, so roots are shared, dropped, zapped and freed
while other vCPUs fault on them.  Odd vCPUs run a nested guest (a root
role of their own, so each of their reloads is a last put), and a
userspace thread toggles dirty logging: enabling it walks every valid root
under ``mmu_lock`` for read, taking a reference to each — possibly to one
whose last reference is being put at that moment.
"""

from __future__ import annotations

import ksync

from ..kvm import Kvm
from ..memslot import KVM_MEM_LOG_DIRTY_PAGES
from ..mmu import set_memory_region
from ._common import check_positive, run_all, scenario_rng
from .registry import scenario


@scenario("root_reload_storm", "vCPUs reload their MMU over and over while roots are walked",
          vcpus=3, pages=12, reloads=4, toggles=4, variant=0)
def root_reload_storm(*, zap: str, bugs: frozenset[str], vcpus: int, pages: int,
                      reloads: int, toggles: int, variant: int) -> None:
    check_positive("root_reload_storm", vcpus=vcpus, pages=pages, reloads=reloads)
    if not isinstance(toggles, int) or toggles < 0:
        raise ValueError(f"scenario root_reload_storm: toggles={toggles!r} must be >= 0")
    rng = scenario_rng("root_reload_storm", variant)
    kvm = Kvm(zap=zap, bugs=bugs)
    set_memory_region(kvm, 0, 0, pages)
    jobs = []
    stripe = max(1, pages // vcpus)
    for i in range(vcpus):
        v = kvm.create_vcpu(guest_mode=bool(i & 1))
        # Each vCPU writes its own stripe and reads its neighbour's, so
        # faults of different vCPUs meet in the same page tables.
        mine = (i * stripe) % pages
        theirs = (((i + 1) % vcpus) * stripe) % pages
        n = min(stripe, pages - mine, pages - theirs)
        program = []
        for _ in range(reloads):
            program += [("touch", mine, n, True, 2), ("reload",), ("touch", theirs, n, False, 2)]
        jobs.append((v.run, (program,), v.name))
    if toggles:
        gaps = [rng.randrange(1, 5) * 0.005 for _ in range(toggles)]
        jobs.append((_toggle_dirty_logging, (kvm, pages, gaps), "userspace"))
    run_all(jobs)
    kvm.destroy()


def _toggle_dirty_logging(kvm: Kvm, pages: int, gaps: list[float]) -> None:
    """KVM_SET_USER_MEMORY_REGION flipping KVM_MEM_LOG_DIRTY_PAGES on slot 0."""
    for delay_ms in gaps:
        ksync.msleep(delay_ms)
        set_memory_region(kvm, 0, 0, pages, KVM_MEM_LOG_DIRTY_PAGES)
        ksync.msleep(delay_ms)
        set_memory_region(kvm, 0, 0, pages, 0)
