"""Zapping under mmu_lock: when a zap yields the lock, and the TLB flush it owes first."""

from __future__ import annotations

import pytest

import ksync
from tdpmmu import Kvm, set_memory_region
from tdpmmu.pagetable import count_present
from tdpmmu.zapper import tdp_mmu_zap_root, zap_gfn_range

from .vm_helpers import assert_no_reports, run, titles

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def resched_due(monkeypatch):
    """need_resched() always true: every zap step that made progress offers to yield."""
    monkeypatch.setattr(ksync, "need_resched", lambda: True)


def populated(zap: str = "async") -> tuple[Kvm, object]:
    kvm = Kvm(zap=zap)
    set_memory_region(kvm, 0, 1, 4 * 512)          # 4K only, four leaf tables
    v = kvm.create_vcpu()
    v.touch(1, 4 * 512, True, 64)
    return kvm, v


def test_a_root_zap_yields_mmu_lock_when_a_reschedule_is_due(resched_due):
    def body(rt):
        kvm, v = populated()
        root = v.root
        flushes = kvm.stats.tlb_flushes
        with kvm.mmu_lock.read():
            assert tdp_mmu_zap_root(kvm, root, True) == 32
        assert kvm.stats.zap_yields > 0
        # A root zap owes no flush: vCPUs flush when they load a new root.
        assert kvm.stats.tlb_flushes == flushes
        assert count_present(root.page) == 0 and kvm.alloc.live_pages == 0
        v.mmu_unload()
        kvm.destroy()
    rt, _ = run(body)
    assert_no_reports(rt)


class LockDrops(ksync.Checker):
    """Records each release of one lock class (set ``lock`` once it exists)."""

    name = "lock-drops"

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.lock = None

    def on_event(self, t, kind, obj, arg) -> None:
        if kind is ksync.events.RELEASE and obj is self.lock:
            self.events.append("unlock")


def test_a_range_zap_flushes_tlbs_before_it_drops_mmu_lock(resched_due, monkeypatch):
    events: list[str] = []
    drops = LockDrops(events)
    with ksync.Runtime(mode="controlled", listeners=[drops]) as rt:
        kvm, v = populated()
        real_flush = kvm.flush_remote_tlbs
        monkeypatch.setattr(kvm, "flush_remote_tlbs",
                            lambda: (events.append("flush"), real_flush())[1])
        drops.lock = kvm.mmu_lock
        kvm.mmu_lock.write_lock()
        owed = zap_gfn_range(kvm, v.root, 1, 1 + 4 * 512, shared=False, flush=False)
        kvm.mmu_lock.write_unlock()
        drops.lock = None
        assert owed and count_present(v.root.page) == 0
        kvm.destroy()
    assert_no_reports(rt)
    # Every drop of the lock inside the walk came right after a flush of what it zapped.
    inner = events[:-1]
    assert inner.count("unlock") >= 2, events
    for i, e in enumerate(inner):
        if e == "unlock":
            assert inner[i - 1] == "flush", events


def test_the_sync_last_put_zap_never_yields_even_when_a_reschedule_is_due(resched_due):
    def body(rt):
        kvm, v = populated("sync")
        v.mmu_unload()
        assert kvm.stats.zapped_sptes == 32 and kvm.stats.zap_yields == 0
        kvm.destroy()
    rt, _ = run(body)
    assert_no_reports(rt)


def test_a_yielding_zap_of_a_root_nobody_references_is_a_warning():
    def body(rt):
        kvm, v = populated("sync")
        root = v.root
        root.tdp_mmu_root_count.set(0)
        with kvm.mmu_lock.read():
            tdp_mmu_zap_root(kvm, root, True)
        root.tdp_mmu_root_count.set(1)
        kvm.destroy()
    rt, _ = run(body)
    assert [r.kind for r in rt.reports] == ["warn"], titles(rt)
    assert "no reference held" in rt.reports[0].title
