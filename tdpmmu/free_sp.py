"""Freeing a page-table page: the check that it maps nothing any more.

Kernel counterpart: the WARNs around tdp_mmu_free_sp() and handle_removed_pt()
(arch/x86/kvm/mmu/tdp_mmu.c).  Kept apart from ``kvm.py`` and ``root.py``
because both free pages: the VM frees zapped tables, a root's RCU callback
its top-level page, and ``root.py`` must not import the ``struct kvm`` above it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .spte import PRESENT, low_bytes


def still_maps(page: Any) -> bool:
    """Does ``page`` hold a present SPTE or a linked child table?

    Cost: one numpy pass over the page's low bytes, plus a C-level count of
    its child slots.
    """
    if np.any(low_bytes(page.spt) & PRESENT):
        return True
    children = page.children
    # list.count runs in C: this check runs on every page freed.
    return children is not None and children.count(None) != len(children)
