"""``memslot_churn``: memslots deleted, re-created and moved under faulting vCPUs.

Selftest counterparts: tools/testing/selftests/kvm/memslot_modification_stress_test.c
(vCPUs fault while the main thread adds and deletes a slot) and
set_memory_region_test.c (a slot moved under a running vCPU).  Every delete
and move runs the fast zap: all roots invalidated under ``mmu_lock`` for
write, vCPUs asked to drop them, then the zap queue flushed (``async``) or
the roots zapped by the caller (``sync``, ``preserve``) — while vCPUs reload
their MMU, fault on the new roots, and the worker zaps the old ones.
"""

from __future__ import annotations

import ksync

from ..kvm import Kvm
from ..memslot import KVM_MEM_LOG_DIRTY_PAGES
from ..mmu import set_memory_region
from ._common import check_positive, run_all, scenario_rng
from .registry import scenario


@scenario("memslot_churn", "memslots deleted, re-created and moved under faulting vCPUs",
          vcpus=2, pages=16, rounds=2, dirty_logging=True, variant=0, halted_vcpus=0)
def memslot_churn(*, zap: str, bugs: frozenset[str], vcpus: int, pages: int,
                  rounds: int, dirty_logging: bool, variant: int, halted_vcpus: int) -> None:
    """Slot 0 stays; slot 1 is deleted and re-created, slot 2 moved between two bases,
    ``rounds`` times each; each vCPU touches all three areas ``rounds + 1`` times.

    With ``dirty_logging`` slot 0 logs dirty pages, so a vCPU's read then
    write of a page is a fast page fault: a lockless compare-exchange on
    whatever root the vCPU still has, possibly one the worker is zapping.

    ``halted_vcpus`` more vCPUs touch one page and halt (HLT with nothing to
    wake them): they handle no request, so each keeps the root it loaded,
    invalid after the first fast zap, until the VM is destroyed.
    """
    check_positive("memslot_churn", vcpus=vcpus, pages=pages, rounds=rounds)
    if not isinstance(halted_vcpus, int) or isinstance(halted_vcpus, bool) or halted_vcpus < 0:
        raise ValueError(f"scenario memslot_churn: halted_vcpus={halted_vcpus!r} must be >= 0")
    rng = scenario_rng("memslot_churn", variant)
    kvm = Kvm(zap=zap, bugs=bugs)
    stable, churn, moved_a, moved_b = 0, 4 * pages, 8 * pages, 12 * pages
    set_memory_region(kvm, 0, stable, pages, KVM_MEM_LOG_DIRTY_PAGES if dirty_logging else 0)
    set_memory_region(kvm, 1, churn, pages)
    set_memory_region(kvm, 2, moved_a, pages)
    jobs = []
    for _ in range(vcpus):
        v = kvm.create_vcpu()
        off = rng.randrange(pages)
        n = max(1, pages // 4)
        # Accesses to an area whose slot is gone are MMIO exits, as in the guest.
        program = []
        for _ in range(rounds + 1):
            program += [("touch", stable + off, min(n, pages - off), False),
                        ("touch", stable + off, min(n, pages - off), True),
                        ("touch", churn + off, min(n, pages - off), False),
                        ("touch", moved_a + off, 1, True), ("touch", moved_b + off, 1, True)]
        jobs.append((v.run, (program,), v.name))
    ops = []
    for r in range(rounds):
        ops += [("delete",), ("create",), ("move", moved_b if r % 2 == 0 else moved_a)]
    for _ in range(halted_vcpus):
        v = kvm.create_vcpu()
        jobs.append((v.run, ([("touch", stable + rng.randrange(pages), 1, False)],), v.name))
    rng.shuffle(ops)
    jobs.append((_churn, (kvm, ops, pages, churn, rng.randrange(1, 4) * 0.005), "memslots"))
    run_all(jobs)
    kvm.destroy()


def _churn(kvm: Kvm, ops: list[tuple], pages: int, churn_base: int, gap_ms: float) -> None:
    """Userspace changing the memory map (KVM_SET_USER_MEMORY_REGION)."""
    present = True
    for op in ops:
        ksync.msleep(gap_ms)
        if op[0] == "delete" and present:
            set_memory_region(kvm, 1, churn_base, 0)
            present = False
        elif op[0] == "create" and not present:
            set_memory_region(kvm, 1, churn_base, pages)
            present = True
        elif op[0] == "move":
            set_memory_region(kvm, 2, op[1], pages)
