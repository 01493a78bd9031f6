"""Faults racing zaps, reloads, memslot changes, host invalidations, dirty logging and teardown.

Every run is a controlled-mode schedule chosen by the seed, with every
checker on (lockdep, races, use-after-free, refcount, sleep-in-atomic,
hung tasks); a correct model files no report in any generation, and the VM's
accounting returns to zero with nothing reachable from a freed page.
"""

from __future__ import annotations

import random

import pytest

import ksync
from tdpmmu import (
    KVM_MEM_LOG_DIRTY_PAGES,
    Kvm,
    get_dirty_log,
    kvm_mmu_zap_all_fast,
    mmu_notifier_invalidate_range,
    set_memory_region,
)

from .vm_helpers import (
    ZAPS,
    Lifetimes,
    assert_no_reports,
    assert_nothing_reachable_from_freed,
    assert_torn_down,
    run,
)

SEEDS = range(30)

HUGE = 0          # slot 0: gfns [0, 1024), 2M-capable
SMALL = 1         # slot 1: 128 gfns at a misaligned base, 4K only; moved and recreated


def guest_program(rng: random.Random, small_base: int) -> list[tuple]:
    ops: list[tuple] = []
    for _ in range(4):
        pick = rng.random()
        if pick < 0.45:
            ops.append(("touch", rng.randrange(0, 1024, 64), 300, rng.random() < 0.5, 97))
        elif pick < 0.8:
            # Possibly MMIO (the slot moves or is deleted meanwhile).
            ops.append(("touch", small_base + rng.randrange(0, 100), 6, rng.random() < 0.5))
        else:
            ops.append(("reload",))
    return ops


def host_operations(kvm: Kvm, rng: random.Random, small_base: int) -> None:
    """What the VMM and the host do while the vCPUs run."""
    ops = ["move", "delete", "notifier", "notifier", "dirty", "zap_all"]
    rng.shuffle(ops)
    for op in ops[:4]:
        if op == "move":
            small_base = 3000 if small_base != 3000 else 2049
            set_memory_region(kvm, SMALL, small_base, 128)
        elif op == "delete":
            set_memory_region(kvm, SMALL, 0, 0)
            set_memory_region(kvm, SMALL, small_base, 128)
        elif op == "notifier":
            start = rng.randrange(0, 1024, 8)
            mmu_notifier_invalidate_range(kvm, 0, start, start + rng.choice((1, 8, 600)))
        elif op == "dirty":
            set_memory_region(kvm, HUGE, 0, 1024, KVM_MEM_LOG_DIRTY_PAGES)
            get_dirty_log(kvm, HUGE)
            set_memory_region(kvm, HUGE, 0, 1024, 0)
        else:
            with kvm.slots_lock:
                kvm_mmu_zap_all_fast(kvm)


def race_everything(rt: ksync.Runtime, zap: str, seed: int, vcpus: int = 2,
                    bugs: tuple[str, ...] = ()) -> Kvm:
    rng = random.Random(seed)
    kvm = Kvm(zap=zap, bugs=bugs)
    small_base = 2049
    set_memory_region(kvm, HUGE, 0, 1024)
    set_memory_region(kvm, SMALL, small_base, 128)

    def vcpu_thread(v, program):
        # Like a vCPU fd: a reference on the VM for as long as the thread runs,
        # so whichever thread drops the last one tears the VM down.
        kvm.get()
        try:
            v.run(program)
        finally:
            kvm.put()

    threads = []
    for _ in range(vcpus):
        v = kvm.create_vcpu()
        threads.append(rt.spawn(vcpu_thread, v, guest_program(rng, small_base), name=v.name))
    host_operations(kvm, rng, small_base)
    kvm.destroy()            # the creator's reference: teardown races the vCPUs' last puts
    for t in threads:
        rt.join(t)
    return kvm


@pytest.mark.timeout(90)
@pytest.mark.parametrize("zap", ZAPS)
def test_faults_race_zaps_reloads_memslot_changes_notifier_and_teardown_without_reports(zap):
    for seed in SEEDS:
        life = Lifetimes()
        rt, kvm = run(lambda rt, s=seed: race_everything(rt, zap, s, vcpus=2 + s % 2),
                      seed=seed, lifetimes=life, max_steps=400_000)
        assert_no_reports(rt)
        assert_torn_down(kvm)
        assert_nothing_reachable_from_freed(life, kvm)
        assert kvm.stats.faults > 0


@pytest.mark.timeout(90)
@pytest.mark.parametrize("zap", ZAPS)
def test_the_same_races_in_free_mode_with_noise_are_clean_too(zap):
    for seed in range(6):
        life = Lifetimes()
        rt, kvm = run(lambda rt, s=seed: race_everything(rt, zap, s, vcpus=3), mode="free",
                      seed=seed, noise=0.2, lifetimes=life)
        assert_no_reports(rt)
        assert_torn_down(kvm)
        assert_nothing_reachable_from_freed(life, kvm)


@pytest.mark.timeout(60)
def test_the_race_harness_reports_a_reintroduced_bug():
    # Flushing the zap queue under mmu_lock: the worker needs the lock.
    kinds = set()
    for seed in range(3):
        rt, _ = run(lambda rt, s=seed: race_everything(rt, "async", s,
                                                       bugs=("flush-under-mmu-lock",)),
                    seed=seed, max_steps=400_000)
        kinds |= {r.kind for r in rt.reports}
    assert "circular-locking-dependency" in kinds
