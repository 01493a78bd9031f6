"""Populate and zap rates, and memory per SPTE, of 4K-populated TDP roots.

Backs the performance claims of tdpmmu.pagetable / tdpmmu.zap:
  * zap_root() removes at least 20 million 4K SPTEs per second on one core;
  * a 4K-populated root costs at most 12 bytes per mapped SPTE (8 of them
    are the SPTE itself: 4096 bytes per 512 entries).

For each guest size the script builds a root with populate_4k() (the tree a
guest leaves behind once dirty logging has split all of its memory), then
zaps it with zap_root(shared=True) as the zap worker would, with a
should_yield(flush) that never yields and an on_free_page() that only counts.
Memory is measured in a separate build under tracemalloc (numpy reports its
buffers there), and as an RSS delta during the timed build.

End to end (``--e2e``): the same 4K-populated root as a VM's real root,
built under a free-mode runtime with checkers off (``Kvm``, a dirty-logging
memslot, a vCPU's ``mmu_load``, ``populate_4k`` under ``mmu_lock`` for
write), then dropped by the vCPU's ``mmu_unload``: under ``zap="sync"`` the
vCPU zaps it inline, under ``zap="async"`` the zap worker does after the
queue flush.  Reported: the zap rate as the zapping thread saw it (RCU,
yields, accounting, call_rcu of every table page included), and the vCPU's
block time in ``mmu_unload``.  Informational: the targets apply to the
page-table rows.

Run:  python benchmarks/bench_pagetable.py [--sizes-gib 4 64] [--repeat 3] [--e2e] [--json]
Exit status 0 when every target is met, 1 otherwise.
"""

import argparse
import gc
import json
import os
import platform
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import ksync  # noqa: E402
from tdpmmu import KVM_MEM_LOG_DIRTY_PAGES, Kvm, set_memory_region  # noqa: E402
from tdpmmu.pagetable import PageAllocator, populate_4k  # noqa: E402
from tdpmmu.zap import zap_root  # noqa: E402

ZAP_TARGET_SPTES_PER_S = 20e6
MEMORY_TARGET_BYTES_PER_SPTE = 12.0
GIB_PAGES = (1 << 30) >> 12
BASE_PFN = 1 << 24


def _rss_bytes():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def _pin_to_one_core():
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return cpu
    return None


def _build(npages):
    alloc = PageAllocator()
    root = alloc.alloc_root(4)
    populate_4k(root, 0, npages, BASE_PFN, True, alloc)
    return alloc, root


def measure_rates(npages):
    """Time populate_4k() and zap_root(shared=True) of one root."""
    gc.collect()
    rss0 = _rss_bytes()
    t0 = time.perf_counter()
    alloc, root = _build(npages)
    t1 = time.perf_counter()
    rss1 = _rss_bytes()
    freed = [0]

    def on_free_page(page):
        freed[0] += 1

    t2 = time.perf_counter()
    c2 = time.thread_time()
    result = zap_root(root, True, on_free_page, lambda _flush: False)
    c3 = time.thread_time()
    t3 = time.perf_counter()
    if result.sptes != npages or alloc.live_pages or alloc.live_leaves:
        raise SystemExit(f"bench_pagetable: zap left state behind: {result} {alloc.stats()}")
    row = {
        "sptes": npages,
        "memory_bytes": npages << 12,
        "pages_freed": freed[0],
        "populate_s": t1 - t0,
        "populate_sptes_per_s": npages / (t1 - t0),
        "zap_s": t3 - t2,
        "zap_sptes_per_s": npages / (t3 - t2),
        # CPU time of the zapping thread: what one core spent, whatever else ran.
        "zap_cpu_sptes_per_s": npages / max(c3 - c2, 1e-9),
        "rss_bytes_per_spte": (rss1 - rss0) / npages if rss0 is not None else None,
    }
    del alloc, root
    gc.collect()
    return row


def measure_memory(npages):
    """Bytes traced per mapped SPTE for a freshly built root (page tables and all)."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    alloc, root = _build(npages)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del alloc, root
    gc.collect()
    return used / npages


def measure_e2e(npages, zap):
    """A VM's vCPU root, 4K-populated, dropped by the vCPU: (zap SPTE/s, unload block s)."""
    gc.collect()
    with ksync.Runtime(mode="free", checks=()) as rt:
        kvm = Kvm(zap=zap)
        slot = set_memory_region(kvm, 0, 0, npages, KVM_MEM_LOG_DIRTY_PAGES)
        v = kvm.create_vcpu()
        v.mmu_load()
        kvm.mmu_lock.write_lock()
        try:
            populate_4k(v.root.page, 0, npages, slot.host_base, True, kvm.alloc)
        finally:
            kvm.mmu_lock.write_unlock()
        t0 = time.perf_counter()
        v.mmu_unload()
        t1 = time.perf_counter()
        if kvm.zap_wq is not None:
            kvm.flush_zap_queue()
        t2 = time.perf_counter()
        zapped = kvm.stats.zapped_sptes
        zap_ns = sum(kvm.stats.zap_ns.values())
        zap_cpu_ns = sum(kvm.stats.zap_cpu_ns.values())
        kvm.destroy()
    del rt
    if zapped != npages:
        raise SystemExit(f"bench_pagetable: e2e {zap} zapped {zapped} of {npages} SPTEs")
    return {"zap": zap, "sptes": npages, "zap_s": zap_ns / 1e9,
            "zap_sptes_per_s": npages / (zap_ns / 1e9),
            "zap_cpu_sptes_per_s": npages / max(zap_cpu_ns / 1e9, 1e-9),
            "unload_block_s": t1 - t0,
            "unload_to_zapped_s": t2 - t0}


def run_e2e(sizes_gib, repeat):
    rows = []
    for gib in sizes_gib:
        npages = int(gib * GIB_PAGES)
        for zap in ("sync", "async"):
            runs = [measure_e2e(npages, zap) for _ in range(repeat)]
            best = dict(min(runs, key=lambda r: r["zap_s"]))
            best["unload_block_s"] = min(r["unload_block_s"] for r in runs)
            best["zap_cpu_sptes_per_s"] = max(r["zap_cpu_sptes_per_s"] for r in runs)
            rows.append({"guest_gib": gib, **best})
    return rows


def _print_e2e(rows):
    print("end to end: a VM's vCPU root, dropped by mmu_unload (free mode, checks off)")
    head = (f"{'guest':>7} {'zap':>6} {'SPTEs':>10} {'zap':>9} {'zap/s':>9} {'zap/cpu-s':>9} "
            f"{'vCPU blocked':>13}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['guest_gib']:>5}Gi {r['zap']:>6} {r['sptes']:>10,} {r['zap_s']:>8.3f}s "
              f"{r['zap_sptes_per_s'] / 1e6:>8.1f}M {r['zap_cpu_sptes_per_s'] / 1e6:>8.1f}M "
              f"{r['unload_block_s'] * 1e3:>11.2f}ms")


def _best_of(npages, repeat):
    """The fastest of ``repeat`` runs for each rate: other load only slows a run down."""
    runs = [measure_rates(npages) for _ in range(repeat)]
    best = dict(min(runs, key=lambda r: r["zap_s"]))
    fastest_populate = min(runs, key=lambda r: r["populate_s"])
    for key in ("populate_s", "populate_sptes_per_s"):
        best[key] = fastest_populate[key]
    best["zap_cpu_sptes_per_s"] = max(r["zap_cpu_sptes_per_s"] for r in runs)
    # Later runs reuse the heap the first one grew, so only its RSS delta means anything.
    best["rss_bytes_per_spte"] = runs[0]["rss_bytes_per_spte"]
    best["repeat"] = repeat
    return best


def run(sizes_gib, memory=True, repeat=3):
    rows = []
    for gib in sizes_gib:
        npages = int(gib * GIB_PAGES)
        row = {"guest_gib": gib, **_best_of(npages, repeat)}
        row["bytes_per_spte"] = measure_memory(npages) if memory else None
        row["zap_target_met"] = row["zap_sptes_per_s"] >= ZAP_TARGET_SPTES_PER_S
        row["memory_target_met"] = (row["bytes_per_spte"] is None
                                    or row["bytes_per_spte"] <= MEMORY_TARGET_BYTES_PER_SPTE)
        rows.append(row)
    return rows


def _print_table(rows, cpu):
    print(f"tdpmmu page tables, one core (cpu {cpu}), Python {platform.python_version()}, "
          f"numpy {np.__version__}, best of {rows[0]['repeat'] if rows else 0}")
    head = (f"{'guest':>7} {'SPTEs':>10} {'populate':>10} {'populate/s':>11} {'zap':>9} "
            f"{'zap/s':>9} {'zap/cpu-s':>9} {'B/SPTE':>7} {'RSS B/SPTE':>10}  targets")
    print(head)
    print("-" * len(head))
    for r in rows:
        mem = "-" if r["bytes_per_spte"] is None else f"{r['bytes_per_spte']:.2f}"
        rss = "-" if r["rss_bytes_per_spte"] is None else f"{r['rss_bytes_per_spte']:.2f}"
        ok = "ok" if r["zap_target_met"] and r["memory_target_met"] else "MISSED"
        print(f"{r['guest_gib']:>5}Gi {r['sptes']:>10,} {r['populate_s']:>9.3f}s "
              f"{r['populate_sptes_per_s'] / 1e6:>9.1f}M {r['zap_s']:>8.3f}s "
              f"{r['zap_sptes_per_s'] / 1e6:>8.1f}M {r['zap_cpu_sptes_per_s'] / 1e6:>8.1f}M "
              f"{mem:>7} {rss:>10}  {ok}")
    print(f"targets: zap >= {ZAP_TARGET_SPTES_PER_S / 1e6:.0f}M SPTEs/s, "
          f"memory <= {MEMORY_TARGET_BYTES_PER_SPTE:.0f} bytes per mapped 4K SPTE")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-gib", type=float, nargs="+", default=[4, 64],
                        help="guest memory sizes to populate with 4K SPTEs (default: 4 64)")
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the tracemalloc build (it doubles the run time)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="timed runs per size; the fastest is reported (default: 3)")
    parser.add_argument("--e2e", action="store_true",
                        help="also measure the zap of a VM's real root (sync and async)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    if any(g <= 0 for g in args.sizes_gib):
        parser.error("--sizes-gib: sizes must be positive")
    if args.repeat < 1:
        parser.error("--repeat: must be at least 1")
    cpu = _pin_to_one_core()
    rows = run(args.sizes_gib, memory=not args.no_memory, repeat=args.repeat)
    e2e = run_e2e(args.sizes_gib, args.repeat) if args.e2e else []
    if args.json:
        json.dump({"cpu": cpu, "python": platform.python_version(), "numpy": np.__version__,
                   "targets": {"zap_sptes_per_s": ZAP_TARGET_SPTES_PER_S,
                               "bytes_per_spte": MEMORY_TARGET_BYTES_PER_SPTE},
                   "rows": rows, "e2e": e2e}, sys.stdout, indent=2)
        print()
    else:
        _print_table(rows, cpu)
        if e2e:
            _print_e2e(e2e)
    return 0 if all(r["zap_target_met"] and r["memory_target_met"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
