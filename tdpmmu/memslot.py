"""Memslots: guest-physical ranges backed by host memory, kept sorted by base gfn.

Kernel counterpart: ``struct kvm_memory_slot`` and ``struct kvm_memslots``
(include/linux/kvm_host.h), ``__kvm_set_memory_region()`` (virt/kvm/kvm_main.c).
Each address space (normal, SMM) has its own set.  Lookups by gfn are
O(log n) through a ``SortedKeyList`` keyed by base gfn.

Context: changed only with ``kvm->slots_lock`` held (set_memory_region takes it);
read by faults under ``mmu_lock`` (the kernel reads them under SRCU).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sortedcontainers import SortedKeyList

KVM_MEM_LOG_DIRTY_PAGES = 1 << 0
KVM_MEM_READONLY = 1 << 1
KVM_ADDRESS_SPACE_NUM = 2


class MemslotError(ValueError):
    """A memslot request the kernel would refuse with -EINVAL or -EEXIST."""


@dataclass(eq=False)
class Memslot:
    """One slot.  ``host_base`` is the host pfn backing ``base_gfn``."""

    id: int
    as_id: int
    base_gfn: int
    npages: int
    flags: int = 0
    host_base: int = 0
    dirty: set[int] = field(default_factory=set)
    #: Kernel: KVM_MEMSLOT_INVALID — being deleted or moved; faults retry.
    invalid: bool = False

    @property
    def end_gfn(self) -> int:
        return self.base_gfn + self.npages

    @property
    def dirty_logging(self) -> bool:
        return bool(self.flags & KVM_MEM_LOG_DIRTY_PAGES)

    def contains(self, gfn: int) -> bool:
        return self.base_gfn <= gfn < self.end_gfn

    def max_level_for(self, gfn: int, wanted: int) -> int:
        """Largest mapping level (1 = 4K, 2 = 2M, 3 = 1G) that fits inside the slot at ``gfn``.

        Kernel: kvm_mmu_max_mapping_level() — huge pages need the whole
        aligned range inside the slot and guest/host alignment to agree;
        dirty logging forces 4K so each write is seen.
        """
        if self.dirty_logging:
            return 1
        level = wanted
        while level > 1:
            span = 1 << (9 * (level - 1))
            start = gfn & ~(span - 1)
            aligned = (self.host_base - self.base_gfn) % span == 0
            if aligned and start >= self.base_gfn and start + span <= self.end_gfn:
                return level
            level -= 1
        return 1

    def __repr__(self) -> str:
        return (f"Memslot(id={self.id}, as={self.as_id}, gfn=[{self.base_gfn:#x}, "
                f"{self.end_gfn:#x}), flags={self.flags:#x})")


class Memslots:
    """The slots of one address space, sorted by base gfn.  Kernel: struct kvm_memslots."""

    def __init__(self, as_id: int) -> None:
        self.as_id = as_id
        self._by_gfn: SortedKeyList = SortedKeyList(key=lambda s: s.base_gfn)
        self._by_id: dict[int, Memslot] = {}
        self.generation = 0

    def __iter__(self):
        return iter(list(self._by_gfn))

    def __len__(self) -> int:
        return len(self._by_gfn)

    def get(self, slot_id: int) -> Memslot | None:
        return self._by_id.get(slot_id)

    def find(self, gfn: int) -> Memslot | None:
        """Kernel: gfn_to_memslot() — O(log n)."""
        i = self._by_gfn.bisect_key_right(gfn) - 1
        if i >= 0:
            s = self._by_gfn[i]
            if s.contains(gfn):
                return s
        return None

    def _check_free(self, base: int, npages: int, ignore: Memslot | None = None) -> None:
        end = base + npages
        i = max(0, self._by_gfn.bisect_key_right(base) - 1)
        for s in self._by_gfn.islice(i):
            if s.base_gfn >= end:
                break
            if s is not ignore and s.base_gfn < end and base < s.end_gfn:
                raise MemslotError(f"gfn range [{base:#x}, {end:#x}) overlaps {s}")

    def add(self, slot: Memslot) -> None:
        if slot.npages <= 0:
            raise MemslotError(f"memslot {slot.id}: npages must be positive, got {slot.npages}")
        if slot.base_gfn < 0:
            raise MemslotError(f"memslot {slot.id}: negative base gfn {slot.base_gfn}")
        if slot.id in self._by_id:
            raise MemslotError(f"memslot {slot.id} already exists in address space {self.as_id}")
        self._check_free(slot.base_gfn, slot.npages)
        self._by_gfn.add(slot)
        self._by_id[slot.id] = slot
        self.generation += 1

    def remove(self, slot: Memslot) -> None:
        self._by_gfn.remove(slot)
        del self._by_id[slot.id]
        self.generation += 1

    def check_move(self, slot: Memslot, new_base: int) -> None:
        """Raise MemslotError if ``slot`` cannot move to ``new_base`` (overlap, negative)."""
        if new_base < 0:
            raise MemslotError(f"memslot {slot.id}: negative base gfn {new_base}")
        self._check_free(new_base, slot.npages, ignore=slot)

    def move(self, slot: Memslot, new_base: int) -> None:
        self.check_move(slot, new_base)
        self._by_gfn.remove(slot)
        slot.base_gfn = new_base
        self._by_gfn.add(slot)
        self.generation += 1
