"""State probes: what a trace shows of the TDP MMU beyond lock and refcount events.

Kernel counterpart: the ``kvm_mmu_*`` tracepoints and ``struct kvm_vm_stat``
that let a reader see root invalidation and zapped SPTEs.  Registering them
with ``ksync.events.register_state_probe`` makes every traced run record a
STATE entry when a root turns invalid or a VM's zap counters move.  Importing
``tdpmmu.teach`` registers them; a probe only reads, so a run with them behaves
exactly as one without.
"""

from __future__ import annotations

import weakref
from typing import Any

from ksync import events as ev

from ..kvm import Kvm
from ..root import Root


def root_state(root: Root) -> dict[str, str]:
    """``invalid``: ``yes`` once the root can no longer be found by a role lookup."""
    return {"invalid": "yes" if root.invalid else "no"}


_zap_memo: weakref.WeakKeyDictionary[Kvm, dict[str, Any]] = weakref.WeakKeyDictionary()


def kvm_state(kvm: Kvm) -> dict[str, str]:
    """The VM's running totals of zapped SPTEs and page-table pages, and TLB flushes.

    ``zapped_sptes`` reads ``N@thread``: the thread whose zap moved the total,
    known exactly from the per-thread zap times the zapper records (the
    recorder alone only sees which thread emitted next).  A zap that records
    no time (a range zap) leaves the thread out.
    """
    s = kvm.stats
    memo = _zap_memo.setdefault(kvm, {"sptes": 0, "by": "", "ns": {}})
    ns = dict(s.zap_ns)
    if s.zapped_sptes != memo["sptes"]:
        movers = sorted(t for t, v in ns.items() if memo["ns"].get(t) != v)
        memo["by"] = movers[0] if len(movers) == 1 else ""
        memo["sptes"] = s.zapped_sptes
    memo["ns"] = ns
    by = f"@{memo['by']}" if memo["by"] else ""
    return {"zapped_sptes": f"{s.zapped_sptes}{by}", "zapped_pages": str(s.zapped_pages),
            "tlb_flushes": str(s.tlb_flushes)}


def split_value(value: str, thread: str) -> tuple[int, str]:
    """``"64@vcpu-0"`` -> ``(64, "vcpu-0")``; without ``@``, the recording thread."""
    n, _, by = value.partition("@")
    return int(n), by or thread


def register() -> None:
    """Install the probes (idempotent)."""
    ev.register_state_probe(Root, root_state)
    ev.register_state_probe(Kvm, kvm_state)
