"""Work-queue benchmark: queue_work latency and works/second against ThreadPoolExecutor.

Run: ``python benchmarks/bench_workqueue.py [--works N] [--workers W] [--repeat R] [--json]``.
Both sides run in the same process, one after the other, on the same
machine, with the same number of workers and the same trivial work
function; figures go to BENCHMARKS.md ("Work queues (issue 3)").

* throughput: N works queued from one thread, then waited for
  (``flush_workqueue`` / ``concurrent.futures.wait``); works per second of
  the whole batch, best of R rounds.  The work queue runs under
  ``Runtime(checks=())`` in free mode (no checker attached), the target
  being within 2x of ThreadPoolExecutor.
* queue latency: the mean cost of one ``queue_work`` (a fresh Work each
  time, as ``submit`` makes a fresh Future) seen by the queueing thread.
* CPU per work: process CPU time (every thread) over the batch divided by
  N — the figure least disturbed by other load on the machine.
* end-to-end latency: queue one work and wait for it, one at a time
  (``flush_work`` / ``Future.result``), the median over N/10 round trips.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

import ksync
import workqueue


def _nop(_arg: object = None) -> None:
    """The work: nothing, so the machinery is all that is measured."""


def tpe_throughput(n: int, workers: int) -> tuple[float, float, float]:
    """(works/s, ns per submit, process CPU ns per work) for ThreadPoolExecutor."""
    with ThreadPoolExecutor(max_workers=workers) as ex:
        wait([ex.submit(_nop) for _ in range(workers * 4)])   # start every worker first
        c0 = time.process_time_ns()
        t0 = time.perf_counter_ns()
        futs = [ex.submit(_nop) for _ in range(n)]
        t1 = time.perf_counter_ns()
        wait(futs)
        t2 = time.perf_counter_ns()
        c1 = time.process_time_ns()
    return n / ((t2 - t0) / 1e9), (t1 - t0) / n, (c1 - c0) / n


def wq_throughput(n: int, workers: int, checks: tuple = ()) -> tuple[float, float, float]:
    """(works/s, ns per queue_work, process CPU ns per work) with ``workers`` kworkers."""
    with ksync.Runtime(mode="free", checks=checks, max_steps=None):
        workqueue.set_pool_limits(max_workers=workers)
        wq = workqueue.alloc_workqueue("bench", workqueue.WQ_UNBOUND, 0)
        warm = [workqueue.Work(_nop) for _ in range(workers * 4)]
        for w in warm:
            workqueue.queue_work(wq, w)
        workqueue.flush_workqueue(wq)
        queue_work, Work = workqueue.queue_work, workqueue.Work
        c0 = time.process_time_ns()
        t0 = time.perf_counter_ns()
        for _ in range(n):
            queue_work(wq, Work(_nop))
        t1 = time.perf_counter_ns()
        workqueue.flush_workqueue(wq)
        t2 = time.perf_counter_ns()
        c1 = time.process_time_ns()
        workqueue.destroy_workqueue(wq)
    return n / ((t2 - t0) / 1e9), (t1 - t0) / n, (c1 - c0) / n


def tpe_enqueue(n: int) -> float:
    """ns per submit while the only worker is blocked (no consumer competing)."""
    gate = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as ex:
        ex.submit(gate.wait)
        t0 = time.perf_counter_ns()
        for _ in range(n):
            ex.submit(_nop)
        dt = time.perf_counter_ns() - t0
        gate.set()
    return dt / n


def wq_enqueue(n: int) -> float:
    """ns per queue_work (fresh Work each) with no worker allowed yet (no consumer)."""
    with ksync.Runtime(mode="free", checks=(), max_steps=None):
        workqueue.set_pool_limits(max_workers=0)
        wq = workqueue.alloc_workqueue("bench", workqueue.WQ_UNBOUND, 0)
        queue_work, Work = workqueue.queue_work, workqueue.Work
        t0 = time.perf_counter_ns()
        for _ in range(n):
            queue_work(wq, Work(_nop))
        dt = time.perf_counter_ns() - t0
        workqueue.set_pool_limits(max_workers=8)
        workqueue.destroy_workqueue(wq)
    return dt / n


def tpe_roundtrip(n: int, workers: int) -> float:
    """Median ns for submit + result of one work."""
    out = []
    with ThreadPoolExecutor(max_workers=workers) as ex:
        ex.submit(_nop).result()
        for _ in range(n):
            t0 = time.perf_counter_ns()
            ex.submit(_nop).result()
            out.append(time.perf_counter_ns() - t0)
    return statistics.median(out)


def wq_roundtrip(n: int, workers: int) -> float:
    """Median ns for queue_work + flush_work of one work."""
    out = []
    with ksync.Runtime(mode="free", checks=(), max_steps=None):
        workqueue.set_pool_limits(max_workers=workers)
        wq = workqueue.alloc_workqueue("bench", workqueue.WQ_UNBOUND, 0)
        w = workqueue.Work(_nop)
        workqueue.queue_work(wq, w)
        workqueue.flush_work(w)
        for _ in range(n):
            t0 = time.perf_counter_ns()
            workqueue.queue_work(wq, w)
            workqueue.flush_work(w)
            out.append(time.perf_counter_ns() - t0)
        workqueue.destroy_workqueue(wq)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--works", type=int, default=50_000)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    n, k = a.works, a.workers
    # Rounds alternate the two sides, so a change in machine load hits both.
    tpe, wq, ratios = [], [], []
    for _ in range(a.repeat):
        tpe.append(tpe_throughput(n, k))
        wq.append(wq_throughput(n, k))
        ratios.append(tpe[-1][0] / wq[-1][0])
    wq_all = wq_throughput(n // 5, k, checks=tuple(ksync.ALL_CHECKS))
    res = {
        "python": platform.python_version(), "works": n, "workers": k, "repeat": a.repeat,
        "tpe_works_per_s": round(max(x[0] for x in tpe)),
        "wq_works_per_s": round(max(x[0] for x in wq)),
        "throughput_ratio_median": round(statistics.median(ratios), 2),
        "tpe_cpu_ns_per_work": round(statistics.median(x[2] for x in tpe)),
        "wq_cpu_ns_per_work": round(statistics.median(x[2] for x in wq)),
        "tpe_submit_ns": round(min(x[1] for x in tpe)),
        "wq_queue_work_ns": round(min(x[1] for x in wq)),
        "tpe_submit_uncontended_ns": round(tpe_enqueue(n)),
        "wq_queue_work_uncontended_ns": round(wq_enqueue(n)),
        "tpe_roundtrip_ns": round(tpe_roundtrip(n // 10, k)),
        "wq_roundtrip_ns": round(wq_roundtrip(n // 10, k)),
        "wq_all_checks_works_per_s": round(wq_all[0]),
    }
    if a.json:
        print(json.dumps(res, indent=2))
        return
    print(f"Python {res['python']}, {n} works, {k} workers, {a.repeat} alternating rounds")
    print(f"{'':40}{'ThreadPoolExecutor':>19}{'workqueue':>11}{'TPE/wq':>8}")
    rows = [("works/s, best (checks=())", "tpe_works_per_s", "wq_works_per_s"),
            ("CPU ns per work (all threads), median", "tpe_cpu_ns_per_work",
             "wq_cpu_ns_per_work"),
            ("ns per submit/queue_work, in batch", "tpe_submit_ns", "wq_queue_work_ns"),
            ("ns per submit/queue_work, no consumer", "tpe_submit_uncontended_ns",
             "wq_queue_work_uncontended_ns"),
            ("round trip ns, median", "tpe_roundtrip_ns", "wq_roundtrip_ns")]
    for label, tk, wk in rows:
        print(f"{label:40}{res[tk]:>19,}{res[wk]:>11,}{res[tk] / res[wk]:>8.2f}")
    print(f"{'throughput TPE/wq, median of rounds':40}{'':>30}"
          f"{res['throughput_ratio_median']:>8}")
    print(f"{'works/s, every checker on':40}{'':>19}{res['wq_all_checks_works_per_s']:>11,}")


if __name__ == "__main__":
    main()
