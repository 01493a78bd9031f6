"""The small programs the labs run, and the runner that traces them.

Each program runs on the main thread of an entered controlled ``ksync.Runtime``
(like a scenario, but fixed to what its lab teaches) and notes the scheduling
steps that matter in ``marks`` as it goes, so they survive a run that a
deadlock cut short.  ``run_program`` wraps one run into a
``tdpmmu.harness.RunResult`` with its trace, so the labs, ``--trace`` and
``--timeline`` treat lab runs and scenario runs alike.

Kernel counterpart: the selftests the labs imitate —
tools/testing/selftests/kvm/max_guest_memory_test.c (lab 1), the memslot
deletion of set_memory_region_test.c (labs 2 and 3) and VM teardown right
after a root was dropped (lab 4).
"""

from __future__ import annotations

import random
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import ksync
from ksync.strategy import Strategy

from ..harness import RunResult
from ..kvm import Kvm
from ..memslot import KVM_MEM_LOG_DIRTY_PAGES
from ..mmu import kvm_mmu_zap_all_fast, set_memory_region


class PriorityStrategy(Strategy):
    """Run the highest-priority runnable thread; priorities are drawn from the seed.

    This is PCT (probabilistic concurrency testing) with no priority change
    points: a low-priority thread — say a kworker — does not run until every
    thread above it blocks or ends, which is how a busy host delays a
    kworker in real life.  Cost per decision: O(runnable).
    """

    name = "priority"

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.prio: dict[int, float] = {}

    def choose(self, runnable: Sequence[Any], current: Any, step: int) -> Any:
        for t in runnable:
            if t.tid not in self.prio:
                self.prio[t.tid] = self.rng.random()
        return max(runnable, key=lambda t: self.prio[t.tid])


def make_lab_strategy(name: str, seed: int) -> Strategy | str:
    """``random`` (ksync's own) or ``priority`` (PriorityStrategy above)."""
    if name == "priority":
        return PriorityStrategy(seed)
    if name == "random":
        return "random"
    raise ValueError(f"lab strategy {name!r}: random or priority")


def run_program(name: str, fn: Callable[..., None], *, seed: int,
                strategy: str = "random", zap: str = "async", bugs: Sequence[str] = (),
                max_steps: int = 200_000, **params: Any) -> RunResult:
    """Run ``fn(zap=, bugs=, marks=, **params)`` once under a traced controlled runtime.

    The marks ``fn`` noted are kept in ``result.params["marks"]``; a crash of
    the model is kept in ``result.error`` as run_scenario does.
    """
    rt = ksync.Runtime(mode="controlled", seed=seed, trace=True, max_steps=max_steps,
                       strategy=make_lab_strategy(strategy, seed))
    marks: dict[str, Any] = {}
    error = ""
    try:
        with rt:
            fn(zap=zap, bugs=tuple(bugs), marks=marks, **params)
    except ksync.ReplayDivergence:
        raise
    except Exception as e:  # noqa: BLE001 - a crash of the model is a finding, kept whole
        error = "".join(traceback.format_exception(e)).rstrip()
    return RunResult(scenario=name, zap=zap, bugs=tuple(bugs), mode="controlled", seed=seed,
                     strategy=strategy, params={**params, "marks": marks},
                     reports=list(rt.reports), schedule=rt.schedule, steps=rt.step,
                     error=error, trace=list(rt.tracer.events), runtime=rt)


def unload_populated_root(*, zap: str, bugs: tuple[str, ...], marks: dict[str, Any],
                          pages: int) -> None:
    """Lab 1: one vCPU maps ``pages`` 4K pages, then drops the last reference to its root.

    Dirty logging forces 4K mappings, so the root holds one SPTE per page.
    Marks the step window of the vCPU's ``mmu_unload``.
    """
    rt = ksync.current_runtime()
    kvm = Kvm(zap=zap, bugs=bugs)
    set_memory_region(kvm, 0, 0, pages, KVM_MEM_LOG_DIRTY_PAGES)
    vcpu = kvm.create_vcpu()
    marks["vcpu"] = vcpu.name

    def guest() -> None:
        vcpu.touch(0, pages, True)
        marks["unload_start"] = rt.step
        vcpu.mmu_unload()
        marks["unload_end"] = rt.step

    rt.join(rt.spawn(guest, name=vcpu.name))
    marks["teardown_start"] = rt.step
    kvm.destroy()


def shared_root_then_memslot_delete(*, zap: str, bugs: tuple[str, ...],
                                    marks: dict[str, Any], pages: int, vcpus: int) -> None:
    """Labs 2 and 3: vCPUs share one root; the memslot is then deleted under them.

    Deleting a memslot runs the fast zap (kvm_mmu_zap_all_fast): every root
    is invalidated under ``mmu_lock`` for write and zapped afterwards, while
    the vCPUs still hold references and fault again after a pause.
    """
    rt = ksync.current_runtime()
    kvm = Kvm(zap=zap, bugs=bugs)
    set_memory_region(kvm, 0, 0, pages)
    program = [("touch", 0, pages, True), ("sleep", 1), ("touch", 0, pages, False)]
    threads = []
    for _ in range(vcpus):
        v = kvm.create_vcpu()
        threads.append(rt.spawn(v.run, program, name=v.name))
    ksync.msleep(0.5)                     # the vCPUs have mapped memory by now
    marks["delete_start"] = rt.step
    with kvm.slots_lock:
        kvm_mmu_zap_all_fast(kvm)
    marks["delete_end"] = rt.step
    for t in threads:
        rt.join(t)
    kvm.destroy()


def drop_root_then_destroy(*, zap: str, bugs: tuple[str, ...], marks: dict[str, Any],
                           pages: int) -> None:
    """Lab 4: a vCPU drops its root (its zap is queued), then drops the VM's last reference.

    As when the last file descriptor to close is the vCPU's: its thread runs
    kvm_destroy_vm() right after queueing the zap, while the kworker that
    will run the zap may not have been scheduled yet.
    """
    rt = ksync.current_runtime()
    kvm = Kvm(zap=zap, bugs=bugs)
    set_memory_region(kvm, 0, 0, pages)
    vcpu = kvm.create_vcpu()
    kvm.get()                              # the vCPU's file holds the VM

    def guest() -> None:
        vcpu.run([("touch", 0, pages, True), ("reload",)])
        marks["teardown_start"] = rt.step
        kvm.put()                          # last reference: kvm_destroy_vm() runs here

    kvm.put()                              # the creator closes its VM file first
    rt.join(rt.spawn(guest, name=vcpu.name))


__all__ = ["PriorityStrategy", "drop_root_then_destroy", "make_lab_strategy", "run_program",
           "shared_root_then_memslot_delete", "unload_populated_root"]
