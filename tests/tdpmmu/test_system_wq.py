"""``Kvm(zap_wq="system")``: the seed's first version, zaps on system_wq holding a VM reference.

Pinned: each queued zap takes a VM reference (kvm_get_kvm_safe) that the
worker puts back; a put at ``users_count`` zero zaps inline; the worker's
put may destroy the VM on a kworker; zap_all_fast waits for the queued
zaps; teardown and every async scenario stay clean under it over many
seeds, and the ``no-users-count-check`` bug queues with no reference.
"""

from __future__ import annotations

import pytest

import ksync
import tdpmmu.kvm
from tdpmmu import Kvm, kvm_mmu_zap_all_fast, set_memory_region
from tdpmmu.bugs import BY_NAME
from tdpmmu.harness import run_scenario
from tdpmmu.kvm import KvmError
from tdpmmu.scenarios import SCENARIOS
from tdpmmu.scenarios.findings import run_findings
from workqueue import flush_workqueue, system_wq

from .vm_helpers import assert_no_reports, assert_torn_down, run

pytestmark = pytest.mark.timeout(60)


def vm(bugs: tuple[str, ...] = ()) -> tuple[Kvm, object]:
    kvm = Kvm(zap="async", zap_wq="system", bugs=bugs)
    set_memory_region(kvm, 0, 1, 4096)
    return kvm, kvm.create_vcpu()


def test_bad_zap_wq_and_system_outside_async_are_refused() -> None:
    def body(rt):
        with pytest.raises(KvmError, match="zap_wq is one of kvm, system"):
            Kvm(zap_wq="events")
        with pytest.raises(KvmError, match="only the async generation"):
            Kvm(zap="sync", zap_wq="system")
    run(body)


def test_queued_zap_holds_a_vm_reference_that_the_worker_puts_back() -> None:
    def body(rt):
        kvm, v = vm()
        v.touch(1, 300, write=True)
        root = v.root
        v.mmu_unload()
        assert root.invalid and kvm.stats.zaps_queued == 1
        assert kvm.users_count.peek() == 2 and not kvm.owns_zap_wq
        kvm.flush_zap_queue()
        assert kvm.users_count.peek() == 1 and root not in kvm.tdp_mmu_roots
        assert kvm.stats.zapped_sptes == 300
        kvm.destroy()
        assert_torn_down(kvm)
    rt, _ = run(body)
    assert_no_reports(rt)


def test_worker_put_of_the_last_reference_destroys_the_vm_on_a_kworker(monkeypatch) -> None:
    destroyers: list[str] = []
    real = tdpmmu.kvm.Kvm.destroy_vm

    def destroy_vm(self) -> None:
        destroyers.append(ksync.current_thread().name)
        real(self)
    monkeypatch.setattr(tdpmmu.kvm.Kvm, "destroy_vm", destroy_vm)

    def body(rt):
        kvm, v = vm()
        v.touch(1, 300, write=True)
        v.mmu_unload()                    # the queued zap holds a VM reference
        v.mmu_load()
        kvm.destroy()
        flush_workqueue(system_wq)
        with ksync.kasan_disabled():      # the freed struct kvm, post mortem
            assert kvm.destroyed and kvm.stats.inline_zaps == 1
        assert_torn_down(kvm)
    for seed in range(20):
        rt, _ = run(body, seed=seed)
        assert_no_reports(rt)
    # Which thread destroys depends on the schedule; both must happen.
    assert len(destroyers) == 20 and "main" in destroyers
    assert any(d.startswith("kworker/") for d in destroyers), destroyers


def test_zap_all_fast_waits_for_the_zaps_it_queued_and_their_references() -> None:
    def body(rt):
        kvm, v = vm()
        v.touch(1, 200, write=True)
        root = v.root
        with kvm.slots_lock:
            kvm_mmu_zap_all_fast(kvm)
        assert root.invalid and kvm.stats.zapped_sptes == 200
        assert kvm.users_count.peek() == 1
        v.free_obsolete_roots()
        kvm.destroy()
        assert_torn_down(kvm)
    rt, _ = run(body)
    assert_no_reports(rt)


def test_put_at_users_count_zero_zaps_inline_and_the_bug_queues_without_reference() -> None:
    def teardown(bugs: tuple[str, ...]) -> tuple[Kvm, list[str]]:
        def body(rt):
            kvm, v = vm(bugs)
            v.touch(1, 100, write=True)
            kvm.destroy()                 # users_count 0, then the vCPU's put_root
            flush_workqueue(system_wq)
            return kvm
        rt, kvm = run(body)
        return kvm, [r.kind for r in rt.reports]
    kvm, kinds = teardown(())
    assert kinds == [] and kvm.stats.inline_zaps == 1 and kvm.stats.zaps_queued == 0
    kvm, kinds = teardown(("no-users-count-check",))
    assert kvm.stats.inline_zaps == 0 and kvm.stats.zaps_queued == 1
    assert kvm.users_count.peek() == 0       # queued with no VM reference taken
    assert set(kinds) <= {"warn", "use-after-free", "held-lock-freed"}, kinds


@pytest.mark.timeout(120)
@pytest.mark.parametrize("strategy", ("random", "pct"))
def test_teardown_on_system_wq_without_the_bug_is_clean_over_many_seeds(strategy: str) -> None:
    bug = BY_NAME["no-users-count-check"]
    assert dict(bug.params) == {"zap_wq": "system"} and bug.scenario == "teardown"
    for seed in range(100):
        kinds = run_findings(bug, "teardown", zap="async", seed=seed, strategy=strategy)
        assert kinds == [], (strategy, seed, kinds)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_async_scenario_on_system_wq_is_clean(name: str, monkeypatch) -> None:
    # Only teardown takes a zap_wq parameter: for the others, make system_wq
    # the model's default for the duration of this test.
    made: list[Kvm] = []
    real = tdpmmu.kvm.Kvm.__init__

    def init(self, *, zap_wq: str = "system", **kw) -> None:
        real(self, zap_wq=zap_wq, **kw)
        made.append(self)
    monkeypatch.setattr(tdpmmu.kvm.Kvm, "__init__", init)
    own = {"zap_wq": "system"} if "zap_wq" in SCENARIOS[name].params else {}
    for seed in range(3):
        r = run_scenario(name, zap="async", seed=seed, params={"variant": seed, **own})
        assert r.clean, (name, seed, r.kinds(), r.error[-2000:])
    assert made and all(k.zap_wq is system_wq and not k.owns_zap_wq for k in made)
