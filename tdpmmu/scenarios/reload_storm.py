"""``root_reload_storm``: vCPUs reloading their MMU over and over while they fault.

Selftest counterpart: none directly; it is the pattern behind the seed's
report (a vCPU that drops the last reference to a root pays for its zap)
and the reason get_root must never revive a root whose count hit zero.
Every reload puts the vCPU's root under ``mmu_lock`` for read and loads one
again under it for write, so roots are shared, dropped, zapped and freed
while other vCPUs fault on them.
"""

from __future__ import annotations

import ksync

from ..kvm import Kvm
from ..mmu import set_memory_region
from . import scenario


@scenario("root_reload_storm", "vCPUs reload their MMU over and over while faulting",
          vcpus=3, pages=32, reloads=3)
def root_reload_storm(*, zap: str, bugs: frozenset[str], vcpus: int, pages: int,
                      reloads: int) -> None:
    rt = ksync.current_runtime()
    kvm = Kvm(zap=zap, bugs=bugs)
    set_memory_region(kvm, 0, 0, pages)
    threads = []
    for i in range(vcpus):
        v = kvm.create_vcpu()
        # Each vCPU writes its own stripe and reads its neighbour's, so
        # faults of different vCPUs meet in the same page tables.
        stripe = pages // vcpus
        mine = i * stripe
        theirs = ((i + 1) % vcpus) * stripe
        program = []
        for _ in range(reloads):
            program += [("touch", mine, stripe, True), ("reload",),
                        ("touch", theirs, stripe, False)]
        threads.append(rt.spawn(v.run, program, name=v.name))
    for t in threads:
        rt.join(t)
    kvm.destroy()
