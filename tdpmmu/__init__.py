"""tdpmmu: x86 KVM's TDP MMU root lifecycle, modelled on ksync and workqueue.

``Kvm`` and ``Vcpu`` carry the kernel's operations (see KERNEL.md);
``bugs`` is the catalogue of historical bugs that can be switched back on.
"""

from . import bugs
from .kvm import ZAP_MODES, Kvm, KvmError
from .memslot import KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY, Memslot, MemslotError
from .mmu import (
    get_dirty_log,
    kvm_mmu_zap_all_fast,
    mmu_notifier_invalidate_range,
    set_memory_region,
)
from .root import Role, Root
from .vcpu import Vcpu

__all__ = [
    "KVM_MEM_LOG_DIRTY_PAGES", "KVM_MEM_READONLY", "ZAP_MODES", "Kvm", "KvmError", "Memslot",
    "MemslotError", "Role", "Root", "Vcpu", "bugs", "get_dirty_log", "kvm_mmu_zap_all_fast",
    "mmu_notifier_invalidate_range", "set_memory_region",
]
