"""Host memory behind the memslots, as the MMU notifier sees it.

Kernel counterpart: the host's struct pages behind a memslot's userspace
mapping, and ``kvm_mmu_notifier_invalidate_range_start/end`` telling KVM
that the host is about to unmap (and then free) some of them.

Host pages are not objects until they are freed: a slot's gfn maps to
``slot.host_base + offset`` unless an invalidation remapped it.  When the
host frees a page, a small ``HostPage`` is created, tracked and freed at
once (``ksync.kfree``), so a later guest access through a stale SPTE is an
access to freed memory that the use-after-free checker reports.  The next
fault on that gfn gets a fresh pfn, as a real host would fault in a new page.
"""

from __future__ import annotations

import ksync

from .memslot import Memslot

#: Fresh host pfns handed out after invalidations start here, far above any slot.
_FRESH_PFN_BASE = 1 << 36


class HostPage:
    """A host page that has been freed (kernel: a struct page back in the buddy allocator)."""

    __slots__ = ("name", "pfn", "gfn", "__weakref__", "__dict__")

    def __init__(self, pfn: int, gfn: int) -> None:
        self.name = f"host page pfn {pfn:#x} (gfn {gfn:#x})"
        self.pfn = pfn
        self.gfn = gfn


class HostMemory:
    """Pfn allocation for memslots and the record of freed host pages.

    Context: ``invalidate`` runs with ``mmu_lock`` held for write (inside the
    notifier's start/end pair); ``gfn_to_pfn`` from faults.
    """

    def __init__(self) -> None:
        self._next_slot_pfn = 1 << 20
        self._next_fresh = _FRESH_PFN_BASE
        self.remap: dict[tuple[int, int], int] = {}     # (slot id, gfn) -> pfn
        self.freed: dict[int, HostPage] = {}            # pfn -> freed page

    def back_slot(self, npages: int) -> int:
        """Reserve host pfns for a new slot, 1G-aligned so huge pages can map it."""
        base = self._next_slot_pfn
        self._next_slot_pfn += -(-npages // (1 << 18)) * (1 << 18) + (1 << 18)
        return base

    def gfn_to_pfn(self, slot: Memslot, gfn: int) -> int:
        """Kernel: __gfn_to_pfn_memslot()."""
        return self.remap.get((slot.id, gfn), slot.host_base + (gfn - slot.base_gfn))

    def free_range(self, slot: Memslot, start: int, end: int) -> int:
        """The host unmaps and frees the pages backing [start, end) of ``slot``.

        Call after the notifier's zap returned.  Returns pages freed.
        """
        n = 0
        for gfn in range(max(start, slot.base_gfn), min(end, slot.end_gfn)):
            pfn = self.gfn_to_pfn(slot, gfn)
            page = ksync.track(HostPage(pfn, gfn), "host page")
            ksync.kfree(page)
            self.freed[pfn] = page
            self.remap[(slot.id, gfn)] = self._next_fresh
            self._next_fresh += 1
            n += 1
        return n

    def access(self, pfn: int, gfn: int, write: bool) -> None:
        """A guest access reaching host page ``pfn`` (KASAN's shadow check)."""
        page = self.freed.get(pfn)
        if page is not None:
            ksync.check_access(page, f"guest {'write' if write else 'read'} of gfn {gfn:#x}",
                               write=write)
