"""State probes: what a trace shows of the TDP MMU beyond lock and refcount events.

Kernel counterpart: the ``kvm_mmu_*`` tracepoints and ``struct kvm_vm_stat``
that let a reader see root invalidation and zapped SPTEs.  Registering them
with ``ksync.events.register_state_probe`` makes every traced run record a
STATE entry when a root turns invalid or a VM's zap counters move.  Importing
``tdpmmu.teach`` registers them; a probe only reads, so a run with them behaves
exactly as one without.
"""

from __future__ import annotations

from ksync import events as ev

from ..kvm import Kvm
from ..root import Root


def root_state(root: Root) -> dict[str, str]:
    """``invalid``: ``yes`` once the root can no longer be found by a role lookup."""
    return {"invalid": "yes" if root.invalid else "no"}


def kvm_state(kvm: Kvm) -> dict[str, str]:
    """The VM's running totals of zapped SPTEs and page-table pages, and TLB flushes."""
    s = kvm.stats
    return {"zapped_sptes": str(s.zapped_sptes), "zapped_pages": str(s.zapped_pages),
            "tlb_flushes": str(s.tlb_flushes)}


def register() -> None:
    """Install the probes (idempotent)."""
    ev.register_state_probe(Root, root_state)
    ev.register_state_probe(Kvm, kvm_state)
