"""Helpers for the struct kvm tests: run a body under a runtime, audit a VM after teardown."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import ksync
from tdpmmu.pagetable import count_present
from tdpmmu.spte import PRESENT

ZAPS = ("sync", "async", "preserve")


class Lifetimes(ksync.Checker):
    """Keeps every page-table page and root the model allocated, and what it freed.

    Listens to the ALLOC/FREE events that ``ksync.track``/``ksync.kfree``
    emit, so it sees exactly what the use-after-free checker sees.
    """

    name = "lifetimes"

    def __init__(self) -> None:
        self.pages: list[Any] = []
        self.roots: list[Any] = []
        self.freed: set[int] = set()

    def on_event(self, t: Any, kind: str, obj: Any, arg: Any) -> None:
        if kind is ksync.events.ALLOC:
            if arg == "page table":
                self.pages.append(obj)
            elif isinstance(arg, str) and arg.startswith("struct kvm_mmu_page"):
                self.roots.append(obj)
        elif kind is ksync.events.FREE:
            self.freed.add(id(obj))

    def is_freed(self, obj: Any) -> bool:
        return id(obj) in self.freed


def run(body: Callable[[ksync.Runtime], Any], mode: str = "controlled", seed: int = 0,
        lifetimes: Lifetimes | None = None, **kw: Any) -> tuple[ksync.Runtime, Any]:
    """Enter a runtime (all checkers unless ``checks=`` says otherwise) and call ``body(rt)``."""
    listeners = [lifetimes] if lifetimes is not None else []
    result = None
    with ksync.Runtime(mode=mode, seed=seed, listeners=listeners, **kw) as rt:
        result = body(rt)
    return rt, result


def titles(rt: ksync.Runtime) -> list[str]:
    return [f"{r.kind}: {r.title}" for r in rt.reports]


def assert_no_reports(rt: ksync.Runtime) -> None:
    assert not rt.reports, "\n\n".join(r.text for r in rt.reports)


def assert_torn_down(kvm: Any) -> None:
    """Accounting after destroy: no root, no table page, no leaf; every page came back."""
    with ksync.kasan_disabled():     # reading the freed struct kvm, post mortem
        _assert_torn_down(kvm)


def _assert_torn_down(kvm: Any) -> None:
    alloc = kvm.alloc
    assert kvm.destroyed
    assert kvm.tdp_mmu_roots == []
    assert alloc.pt_pages == [0] * 6, alloc.stats()
    assert alloc.leaf_sptes == [0] * 6, alloc.stats()
    assert alloc.allocated == alloc.freed + alloc.discarded, alloc.stats()
    st = kvm.stats
    assert st.roots_allocated == st.roots_freed == st.roots_rcu_freed, st.snapshot()


def assert_nothing_reachable_from_freed(life: Lifetimes, kvm: Any) -> None:
    """No SPTE is reachable from a freed page-table page or root; every linked page was freed.

    The only pages never freed are those that lost a link race (``discarded``):
    never published, so never reachable from any root.
    """
    assert life.pages or life.roots, "nothing was allocated: the test proves nothing"
    unfreed = 0
    for page in life.pages:
        if not life.is_freed(page):
            unfreed += 1
            continue
        assert not np.any(page.spt & np.uint64(PRESENT)), f"{page} freed with present SPTEs"
        if page.children is not None:
            assert all(c is None for c in page.children), f"{page} freed with children"
    assert unfreed == kvm.alloc.discarded, (unfreed, kvm.alloc.stats())
    for root in life.roots:
        assert life.is_freed(root), f"{root!r} never freed"
        assert root.freed
        assert count_present(root.page) == 0, f"{root!r} freed while mapping memory"
        assert all(c is None for c in root.page.children), f"{root!r} freed with children"
