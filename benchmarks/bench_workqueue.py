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
* end-to-end latency: queue one work and wait for it, one at a time
  (``flush_work`` / ``Future.result``), the median over N/10 round trips.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from concurrent.futures import ThreadPoolExecutor, wait

import ksync
import workqueue


def _nop(_arg: object = None) -> None:
    """The work: nothing, so the machinery is all that is measured."""


def tpe_throughput(n: int, workers: int) -> tuple[float, float]:
    """(works/s, ns per submit) for ThreadPoolExecutor."""
    with ThreadPoolExecutor(max_workers=workers) as ex:
        wait([ex.submit(_nop) for _ in range(workers * 4)])   # start every worker first
        t0 = time.perf_counter_ns()
        futs = [ex.submit(_nop) for _ in range(n)]
        t1 = time.perf_counter_ns()
        wait(futs)
        t2 = time.perf_counter_ns()
    return n / ((t2 - t0) / 1e9), (t1 - t0) / n


def wq_throughput(n: int, workers: int, checks: tuple = ()) -> tuple[float, float]:
    """(works/s, ns per queue_work) for a workqueue with ``workers`` kworkers."""
    with ksync.Runtime(mode="free", checks=checks, max_steps=None):
        workqueue.set_pool_limits(max_workers=workers)
        wq = workqueue.alloc_workqueue("bench", workqueue.WQ_UNBOUND, 0)
        warm = [workqueue.Work(_nop) for _ in range(workers * 4)]
        for w in warm:
            workqueue.queue_work(wq, w)
        workqueue.flush_workqueue(wq)
        queue_work, Work = workqueue.queue_work, workqueue.Work
        t0 = time.perf_counter_ns()
        for _ in range(n):
            queue_work(wq, Work(_nop))
        t1 = time.perf_counter_ns()
        workqueue.flush_workqueue(wq)
        t2 = time.perf_counter_ns()
        workqueue.destroy_workqueue(wq)
    return n / ((t2 - t0) / 1e9), (t1 - t0) / n


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
    tpe = [tpe_throughput(n, k) for _ in range(a.repeat)]
    wq = [wq_throughput(n, k) for _ in range(a.repeat)]
    wq_all = wq_throughput(n // 5, k, checks=tuple(ksync.ALL_CHECKS))
    tpe_best = max(tpe)
    wq_best = max(wq)
    rt_tpe = tpe_roundtrip(n // 10, k)
    rt_wq = wq_roundtrip(n // 10, k)
    res = {
        "python": platform.python_version(), "works": n, "workers": k, "repeat": a.repeat,
        "tpe_works_per_s": round(tpe_best[0]), "wq_works_per_s": round(wq_best[0]),
        "throughput_ratio_tpe_over_wq": round(tpe_best[0] / wq_best[0], 2),
        "tpe_submit_ns": round(min(x[1] for x in tpe)),
        "wq_queue_work_ns": round(min(x[1] for x in wq)),
        "wq_all_checks_works_per_s": round(wq_all[0]),
        "tpe_roundtrip_ns": round(rt_tpe), "wq_roundtrip_ns": round(rt_wq),
    }
    if a.json:
        print(json.dumps(res, indent=2))
        return
    print(f"Python {res['python']}, {n} works, {k} workers, best of {a.repeat}")
    print(f"{'':34}{'ThreadPoolExecutor':>20}{'workqueue':>14}{'ratio':>8}")
    print(f"{'works/s (checks=())':34}{res['tpe_works_per_s']:>20,}{res['wq_works_per_s']:>14,}"
          f"{res['throughput_ratio_tpe_over_wq']:>8}")
    print(f"{'ns per submit / queue_work':34}{res['tpe_submit_ns']:>20,}"
          f"{res['wq_queue_work_ns']:>14,}"
          f"{res['wq_queue_work_ns'] / res['tpe_submit_ns']:>8.2f}")
    print(f"{'round trip ns (median)':34}{res['tpe_roundtrip_ns']:>20,}"
          f"{res['wq_roundtrip_ns']:>14,}{res['wq_roundtrip_ns'] / res['tpe_roundtrip_ns']:>8.2f}")
    print(f"{'works/s, every checker on':34}{'':>20}{res['wq_all_checks_works_per_s']:>14,}")


if __name__ == "__main__":
    main()
