"""The stall measurement: for each guest size and zap generation, drop a big root and delete a slot.

Kernel counterpart: the numbers behind the seed patch ("KVM: x86/mmu: Zap
defunct roots via asynchronous worker", 5.18) and behind its removal in 6.6
("Stop zapping invalidated TDP MMU roots asynchronously").  Each sample runs
a fresh ``StallRig`` (see rig.py) in a free-mode runtime with every checker
off, so wall-clock times mean something:

1. vcpu-0 drops the last reference to its 4K-populated root while the other
   vCPUs fault: its block time, the zap's time, lock holds between yields
   and the others' worst ``mmu_lock`` wait;
2. userspace deletes the populated memslot: the latency of the deletion
   (``kvm_mmu_zap_all_fast`` plus the zap of the invalidated roots) and the
   CPU time spent zapping on threads other than the caller.

A row is the median of ``repeat`` samples, so one unlucky wait for the
interpreter lock does not become the figure.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import ksync

from ..bugs import check_bug_names
from ..kvm import ZAP_MODES, Kvm
from .rig import DeleteSample, DropSample, StallRig
from .sizes import PAGE_SIZE, format_size


class StallError(RuntimeError):
    """The model misbehaved during a measurement (a report was filed or a thread failed)."""


@dataclass
class Sample:
    """One VM's worth of measurement."""

    memory_bytes: int
    zap: str
    bugs: tuple[str, ...]
    drop: DropSample
    delete: DeleteSample
    reports: list[str] = field(default_factory=list)
    seconds: float = 0.0


def measure_once(memory_bytes: int, zap: str, bugs: Iterable[str] = (), faulters: int = 2,
                 fault_interval_us: float = 500.0, invalidate_interval_ms: float = 10.0) -> Sample:
    """Build one VM of ``memory_bytes`` under ``zap``, drop its big root, delete its slot.

    Runs its own free-mode runtime with checkers off; must be called from a
    thread that is not already managed.  Model reports (``warn`` from the
    VM's teardown, a hung task) are returned in ``reports``, not raised; a
    run the runtime had to abort (a deadlock, as some catalogued bugs cause)
    raises ``StallError`` naming what it found.
    """
    if zap not in ZAP_MODES:
        raise ValueError(f"measure_once(zap={zap!r}): zap is one of {', '.join(ZAP_MODES)}")
    bugs = tuple(sorted(check_bug_names(bugs)))
    t0 = time.perf_counter()
    rt = ksync.Runtime(mode="free", checks=())
    drop = delete = None
    with rt:
        kvm = Kvm(zap=zap, bugs=bugs, name=f"stall-{format_size(memory_bytes)}-{zap}")
        rig = StallRig(kvm, memory_bytes, faulters=faulters, fault_interval_us=fault_interval_us,
                       invalidate_interval_ms=invalidate_interval_ms)
        try:
            populate_s = rig.start()
            drop = rig.drop()
            drop.populate_s = populate_s
            delete = rig.delete_memslot()
        finally:
            rig.stop()
    if drop is None or delete is None:
        # The runtime unwound the threads of an aborted run and swallowed the unwind.
        found = "; ".join(f"{r.kind}: {r.title}" for r in rt.reports) or "no report"
        raise StallError(f"the run was aborted ({rt.aborting}): {found}")
    return Sample(memory_bytes, zap, bugs, drop, delete,
                  reports=[f"{r.kind}: {r.title}" for r in rt.reports],
                  seconds=time.perf_counter() - t0)


def _ms(ns: float) -> float:
    return round(ns / 1e6, 4)


def _median(values: Sequence[float]) -> float:
    return statistics.median(values)


def _row_head(s0: Sample) -> dict[str, Any]:
    """The keys every row starts with: which size, generation and bugs it measures."""
    return {"memory_bytes": s0.memory_bytes, "memory": format_size(s0.memory_bytes),
            "sptes": s0.memory_bytes // PAGE_SIZE, "zap": s0.zap, "bugs": list(s0.bugs)}


def _medians(parts: Sequence[Any]) -> Any:
    """``med(name)``: the median of field ``name`` over one part of every sample."""
    def med(name: str) -> float:
        return _median([getattr(x, name) for x in parts])
    return med


def drop_row(samples: Sequence[Sample]) -> dict[str, Any]:
    """The ``rows`` entry of DESIGN.md's ``--json`` for one (size, zap): medians of the samples."""
    d = [s.drop for s in samples]
    med = _medians(d)
    return {
        **_row_head(samples[0]),
        "block_ms": _ms(med("block_ns")),
        "worker_zap_ms": _ms(med("worker_zap_ns")),
        "max_mmu_lock_wait_ms": _ms(med("max_wait_ns")),
        "reload_ms": _ms(med("reload_ns")),
        "zap_ms": _ms(med("zap_ns")), "zap_cpu_ms": _ms(med("zap_cpu_ns")),
        "zapped_by": sorted({t for x in d for t in x.zapped_by}),
        "zapped_sptes": int(med("zapped_sptes")),
        "max_mmu_lock_hold_ms": _ms(med("max_hold_ns")),
        "zap_yields": int(med("zap_yields")), "faults": int(med("faults")),
        "host_invalidate_max_ms": _ms(med("host_max_ns")),
        "host_invalidations": int(med("host_invalidations")),
        "populate_s": round(med("populate_s"), 3),
        "repeat": len(samples),
        "block_ms_min": _ms(min(x.block_ns for x in d)),
        "block_ms_samples": [_ms(x.block_ns) for x in d],
    }


def delete_row(samples: Sequence[Sample]) -> dict[str, Any]:
    """One ``memslot_delete`` entry: medians of the samples."""
    d = [s.delete for s in samples]
    med = _medians(d)
    return {
        **_row_head(samples[0]),
        "delete_ms": _ms(med("delete_ns")),
        "caller_zap_cpu_ms": _ms(med("caller_zap_cpu_ns")),
        "off_caller_zap_cpu_ms": _ms(med("off_caller_zap_cpu_ns")),
        "off_caller_zap_ms": _ms(med("off_caller_zap_ns")),
        "zapped_sptes": int(med("zapped_sptes")),
        "max_mmu_lock_wait_ms": _ms(med("max_wait_ns")),
        "host_invalidate_max_ms": _ms(med("host_max_ns")),
        "repeat": len(samples),
        "delete_ms_samples": [_ms(x.delete_ns) for x in d],
    }


@dataclass
class Series:
    """What ``run_series`` measured: rows in (size, zap) order, and the model's reports."""

    rows: list[dict[str, Any]]
    memslot_delete: list[dict[str, Any]]
    reports: list[str]
    seconds: float


ProgressFn = Callable[[int, int, str], None]


def run_series(sizes: Sequence[int], zaps: Sequence[str] = ("sync", "async", "preserve"),
               bugs: Iterable[str] = (), repeat: int = 1, faulters: int = 2,
               fault_interval_us: float = 500.0, invalidate_interval_ms: float = 10.0,
               progress: ProgressFn | None = None) -> Series:
    """Measure every (size, zap) ``repeat`` times.  ``progress(done, total, label)`` is
    called before each sample and once at the end."""
    if repeat < 1:
        raise ValueError(f"run_series(repeat={repeat}): at least one sample per row")
    for z in zaps:
        if z not in ZAP_MODES:
            raise ValueError(f"run_series: zap {z!r} is not one of {', '.join(ZAP_MODES)}")
    bugs = tuple(sorted(check_bug_names(bugs)))
    total = len(sizes) * len(zaps) * repeat
    done = 0
    rows: list[dict[str, Any]] = []
    deletes: list[dict[str, Any]] = []
    reports: list[str] = []
    t0 = time.perf_counter()
    for size in sizes:
        for zap in zaps:
            samples = []
            for i in range(repeat):
                if progress is not None:
                    label = f"{format_size(size)} {zap}" + (f" #{i + 1}" if repeat > 1 else "")
                    progress(done, total, label)
                try:
                    s = measure_once(size, zap, bugs, faulters, fault_interval_us,
                                     invalidate_interval_ms)
                except StallError as e:
                    raise StallError(f"{format_size(size)} {zap}: {e}") from e
                except (ksync.KsyncError, RuntimeError, ValueError) as e:
                    raise StallError(f"{format_size(size)} {zap}: the model failed: "
                                     f"{e}") from e
                reports += [f"{format_size(size)} {zap}: {r}" for r in s.reports]
                samples.append(s)
                done += 1
            rows.append(drop_row(samples))
            deletes.append(delete_row(samples))
    if progress is not None:
        progress(done, total, "done")
    return Series(rows, deletes, reports, time.perf_counter() - t0)

