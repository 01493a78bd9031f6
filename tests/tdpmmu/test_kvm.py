"""struct kvm: construction, users_count, the zap queue, and teardown in the kernel's order."""

from __future__ import annotations

import pytest

import ksync
from tdpmmu import Kvm, KvmError, set_memory_region
from tdpmmu.bugs import UnknownBug
from tdpmmu.root import get_root
from workqueue import WQ_CPU_INTENSIVE, WQ_MEM_RECLAIM, WQ_UNBOUND

from .vm_helpers import (
    ZAPS,
    Lifetimes,
    assert_no_reports,
    assert_nothing_reachable_from_freed,
    assert_torn_down,
    run,
    titles,
)

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("kw, match", [
    ({"zap": "lazy"}, "zap is one of sync, async, preserve"),
    ({"root_level": 3}, "4 or 5 level paging"),
])
def test_bad_arguments_are_clear_errors(kw, match):
    def body(rt):
        with pytest.raises(KvmError, match=match):
            Kvm(**kw)
    run(body, checks=())


def test_an_unknown_bug_name_lists_the_catalogue():
    def body(rt):
        with pytest.raises(UnknownBug, match="known: no-flush-before-free"):
            Kvm(bugs={"no-such-bug"})
    run(body, checks=())


def test_a_vm_needs_a_runtime():
    with pytest.raises(ksync.NoRuntimeError):
        Kvm()


@pytest.mark.parametrize("zap", ZAPS)
def test_only_the_async_generation_allocates_a_zap_queue_like_the_kernel(zap):
    def body(rt):
        kvm = Kvm(zap=zap)
        if zap == "async":
            assert kvm.zap_wq.flags & (WQ_UNBOUND | WQ_MEM_RECLAIM | WQ_CPU_INTENSIVE) == \
                WQ_UNBOUND | WQ_MEM_RECLAIM | WQ_CPU_INTENSIVE
            assert kvm.zap_wq.name == "kvm"
        else:
            assert kvm.zap_wq is None
        kvm.destroy()
    rt, _ = run(body)
    assert_no_reports(rt)


def test_the_vm_is_destroyed_when_its_last_user_goes():
    def body(rt):
        kvm = Kvm()
        kvm.get()                      # e.g. a vCPU fd
        kvm.destroy()                  # the creator's reference
        assert not kvm.destroyed and kvm.users_count.peek() == 1
        kvm.put()
        with ksync.kasan_disabled():      # the freed struct kvm, post mortem
            assert kvm.destroyed and kvm.users_count.peek() == 0
    rt, _ = run(body)
    assert_no_reports(rt)


def test_destroying_twice_is_an_error_and_putting_twice_a_refcount_report():
    def body(rt):
        kvm = Kvm()
        kvm.destroy()
        with pytest.raises(KvmError, match="destroyed twice"):
            kvm.destroy_vm()
        kvm.put()
    rt, _ = run(body, checks=("refcount",))
    assert [r.kind for r in rt.reports] == ["refcount"], titles(rt)


def populate(kvm: Kvm, rt: ksync.Runtime) -> list:
    """Two address spaces, huge and 4K mappings, four vCPUs on their own threads."""
    set_memory_region(kvm, 0, 0, 1 << 10)          # 2M-capable
    set_memory_region(kvm, 1, 4097, 700)           # 4K only
    set_memory_region(kvm, 2, 0, 512, as_id=1)     # SMM address space
    vcpus = [kvm.create_vcpu(), kvm.create_vcpu(), kvm.create_vcpu(as_id=1, smm=True),
             kvm.create_vcpu(guest_mode=True)]
    programs = [
        [("touch", 0, 1024, True, 100), ("touch", 4097, 700, True, 7)],
        [("touch", 4097, 700, False, 3), ("reload",), ("touch", 0, 8)],
        [("touch", 0, 512, True, 5)],
        [("touch", 4500, 50, True)],
    ]
    threads = [rt.spawn(v.run, p, name=v.name) for v, p in zip(vcpus, programs, strict=True)]
    for t in threads:
        rt.join(t)
    return vcpus


@pytest.mark.parametrize("root_level", [4, 5])
@pytest.mark.parametrize("zap", ZAPS)
def test_teardown_returns_every_page_and_root_and_leaves_nothing_reachable(zap, root_level):
    life = Lifetimes()

    def body(rt):
        kvm = Kvm(zap=zap, root_level=root_level)
        populate(kvm, rt)
        snap = kvm.stats_snapshot()
        assert snap["leaf_sptes"][1] > 0 and snap["leaf_sptes"][2] > 0
        assert snap["pt_pages"][root_level - 1] > 0 and snap["roots_alive"] >= 3
        kvm.destroy()
        snap = kvm.stats_snapshot()
        assert snap["roots_alive"] == 0 and sum(snap["pt_pages"]) == 0
        assert snap["pt_pages_freed"] == snap["allocated"] - snap["discarded"]
        # rcu_barrier ran before destroy returned: every free already happened.
        assert_torn_down(kvm)
        return kvm
    rt, kvm = run(body, lifetimes=life)
    assert_no_reports(rt)
    assert_nothing_reachable_from_freed(life, kvm)
    assert {r.page.level for r in life.roots} == {root_level}
    assert life.is_freed(kvm)


@pytest.mark.parametrize("zap", ZAPS)
def test_a_leaked_root_reference_is_a_warning_at_uninit(zap):
    def body(rt):
        kvm = Kvm(zap=zap)
        set_memory_region(kvm, 0, 1, 100)
        v = kvm.create_vcpu()
        v.touch(1, 10, write=True)
        with kvm.mmu_lock.write():
            assert get_root(kvm, v.root)   # and never put
        kvm.destroy()
        return kvm
    rt, kvm = run(body)
    warns = [r.title for r in rt.reports if r.kind == "warn"]
    assert any("roots left at uninit" in w for w in warns), titles(rt)
    if zap != "preserve":        # preserve zapped it at uninit; only the root stays
        assert any("page-table pages left at uninit" in w for w in warns), titles(rt)
    assert {r.kind for r in rt.reports} == {"warn"}, titles(rt)


def test_async_teardown_flushes_a_zap_queued_by_the_last_vcpu_put_before_freeing_the_vm():
    life = Lifetimes()

    def body(rt):
        kvm = Kvm(zap="async")
        set_memory_region(kvm, 0, 1, 600)
        v = kvm.create_vcpu()
        v.touch(1, 600, write=True)
        v.mmu_unload()                 # queues the zap; the worker may not have run yet
        kvm.destroy()
        with ksync.kasan_disabled():      # the freed struct kvm, post mortem
            assert kvm.stats.zaps_queued == 1 and kvm.stats.zapped_sptes == 600
        assert_torn_down(kvm)
        return kvm
    rt, kvm = run(body, lifetimes=life)
    assert_no_reports(rt)
    assert_nothing_reachable_from_freed(life, kvm)


def test_flush_remote_tlbs_empties_every_vcpu_tlb():
    def body(rt):
        kvm = Kvm()
        set_memory_region(kvm, 0, 1, 10)
        a, b = kvm.create_vcpu(), kvm.create_vcpu()
        a.access(1)
        b.access(2)
        assert a.tlb and b.tlb
        n = kvm.stats.tlb_flushes
        kvm.flush_remote_tlbs()
        assert not a.tlb and not b.tlb and kvm.stats.tlb_flushes == n + 1
        kvm.destroy()
    rt, _ = run(body)
    assert_no_reports(rt)


def test_operations_on_a_destroyed_vm_are_refused_and_reported_as_use_after_free():
    from tdpmmu import get_dirty_log, mmu_notifier_invalidate_range

    def body(rt):
        kvm = Kvm()
        set_memory_region(kvm, 0, 0, 10)
        kvm.destroy()
        for call, op in ((lambda: set_memory_region(kvm, 1, 20, 5), "set_memory_region"),
                         (lambda: kvm.create_vcpu(), "create_vcpu"),
                         (lambda: mmu_notifier_invalidate_range(kvm, 0, 0, 5),
                          "mmu_notifier_invalidate_range"),
                         (lambda: get_dirty_log(kvm, 0), "get_dirty_log")):
            with pytest.raises(KvmError, match=f"kvm: {op} on a destroyed VM"):
                call()
    rt, _ = run(body, checks=("uaf",))
    assert {r.kind for r in rt.reports} == {"use-after-free"}, titles(rt)


def test_freeing_a_page_table_that_still_maps_memory_is_a_warning():
    from tdpmmu.pagetable import walk_to

    def body(rt):
        kvm = Kvm()
        set_memory_region(kvm, 0, 1, 10)
        v = kvm.create_vcpu()
        v.access(5)
        page, _ = walk_to(v.root.page, 5)[-1]
        kvm.free_sp(page)             # a zap that forgot to tear the page down first
        ksync.rcu_barrier()
    rt, _ = run(body, checks=())
    assert [r.kind for r in rt.reports] == ["warn"], titles(rt)
    assert "freed while it still holds present SPTEs" in rt.reports[0].title
