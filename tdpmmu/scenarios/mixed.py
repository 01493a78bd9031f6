"""``mixed``: everything at once — reloads, dirty logging, memslot churn, host unmaps, teardown.

Selftest counterpart: none single; it is the union of the other
scenarios at their smallest, the way a fuzzing campaign wants it: vCPUs
fault, write and reload their MMU; userspace toggles dirty logging and
harvests the log (root walks under ``mmu_lock`` for read, meeting the
reloads' puts), deletes and re-creates a slot (fast zaps); the host unmaps
small ranges; and the VM is destroyed at the end.
"""

from __future__ import annotations

import ksync

from ..kvm import Kvm
from ..memslot import KVM_MEM_LOG_DIRTY_PAGES
from ..mmu import get_dirty_log, mmu_notifier_invalidate_range, set_memory_region
from ._common import check_positive, run_all, scenario_rng
from .registry import scenario


@scenario("mixed", "reloads, dirty logging, memslot churn and host unmaps at once",
          vcpus=2, pages=16, rounds=2, variant=0)
def mixed(*, zap: str, bugs: frozenset[str], vcpus: int, pages: int, rounds: int, variant: int) -> None:
    """Slot 0 (``pages``, logged at times), slot 1 (deleted and re-created); each vCPU
    writes, reads and reloads ``rounds`` times; userspace and the host act in between."""
    check_positive("mixed", vcpus=vcpus, pages=pages, rounds=rounds)
    rng = scenario_rng("mixed", variant)
    kvm = Kvm(zap=zap, bugs=bugs)
    set_memory_region(kvm, 0, 0, pages)
    churn = 4 * pages
    set_memory_region(kvm, 1, churn, pages)
    jobs = []
    for _ in range(vcpus):
        v = kvm.create_vcpu()
        off = rng.randrange(pages)
        program = []
        for _ in range(rounds):
            program += [("touch", off, min(4, pages - off), False),
                        ("touch", off, min(4, pages - off), True),
                        ("touch", churn + off, 1, True), ("reload",)]
        jobs.append((v.run, (program,), v.name))
    ops = [("log-on",), ("harvest",), ("log-off",)] + [("flip",)] * rounds
    ops += [("unmap", rng.randrange(pages))] * rounds
    rng.shuffle(ops)
    jobs.append((_userspace_and_host, (kvm, ops, pages, churn, rng.randrange(1, 4) * 0.005),
                 "userspace"))
    run_all(jobs)
    kvm.destroy()


def _userspace_and_host(kvm: Kvm, ops: list[tuple], pages: int, churn: int,
                        gap_ms: float) -> None:
    """KVM_SET_USER_MEMORY_REGION, KVM_GET_DIRTY_LOG and mmu notifier unmaps, in seeded order."""
    for op in ops:
        ksync.msleep(gap_ms)
        if op[0] == "log-on":
            set_memory_region(kvm, 0, 0, pages, KVM_MEM_LOG_DIRTY_PAGES)
        elif op[0] == "harvest":
            if kvm.memslots[0].get(0).dirty_logging:
                get_dirty_log(kvm, 0)
        elif op[0] == "log-off":
            set_memory_region(kvm, 0, 0, pages, 0)
        elif op[0] == "flip":
            set_memory_region(kvm, 1, churn, 0)
            set_memory_region(kvm, 1, churn, pages)
        else:
            mmu_notifier_invalidate_range(kvm, 0, op[1], op[1] + 2)
