"""A campaign on a local Dask cluster against the same campaign on ``--jobs`` (issue 14).

Run: ``python benchmarks/bench_cluster.py [--workers 1,2,4] [--runs-per-worker 300]
[--repeat 3] [--json]``.

For each worker count N, the reference campaign of ``bench_campaign.py``
(``root_reload_storm``, 4 vCPUs, every checker, stacks off, random walk) is
run as the user runs it, one ``tdpmmu fuzz ... --json`` command each, with
``--jobs N`` and with ``--cluster local:N``, rounds interleaved so that a
noisy minute hits both alike: executions per second (the command's own
``executions_per_second``: runs over the time from the first seed handed out
to the last result stored) and the command's whole wall time (interpreter,
pool or cluster start included); best and median of ``--repeat`` rounds, and
the ratio cluster / jobs of the medians.

Then, in this process with one ``local:N`` cluster: the per-task overhead
(the wall time of a no-op task one at a time, and with every worker kept
busy), and the campaign with one seed per task ("unbatched") against the
usual batches, to show what batching saves.  Figures go to BENCHMARKS.md,
section "Campaigns on a cluster (issue 14)".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tdpmmu.campaign import CampaignSpec, run_campaign
from tdpmmu.campaign import cluster as cl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_campaign import REFERENCE  # noqa: E402


def command(runs: int, where: list[str]) -> list[str]:
    """The ``tdpmmu fuzz`` command of the reference campaign, run on ``where``."""
    params = [a for k, v in REFERENCE[1].items() for a in ("--param", f"{k}={v}")]
    return [sys.executable, "-m", "tdpmmu", "fuzz", "--scenario", REFERENCE[0], *params,
            "--strategy", "random", "--runs", str(runs), "--no-minimise", "--json", "-q",
            *where]


def run_command(runs: int, where: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        p = subprocess.run(command(runs, where) + ["--out", d], capture_output=True,
                           text=True, timeout=600)
        wall = time.perf_counter() - t
    if p.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(where)}: exit {p.returncode}: {p.stderr.strip()}")
    doc = json.loads(p.stdout)
    assert doc["complete"] and doc["runs"] == runs
    return {"exec_per_s": doc["executions_per_second"], "wall_s": wall}


def in_process(runs: int, jobs: int, dispatch: Any) -> float:
    """exec/s of the reference campaign on ``dispatch``, in this process."""
    spec = CampaignSpec(REFERENCE[0], params=dict(REFERENCE[1]), runs=runs,
                        strategy="random")
    with tempfile.TemporaryDirectory() as d:
        o = run_campaign(spec, Path(d), jobs=jobs, minimise=False, dispatch=dispatch)
    assert o.complete
    return o.executions_per_second


def _noop(i: int) -> int:
    return i


def task_overhead(d: cl.ClusterDispatch, n: int) -> dict[str, float]:
    """ms per no-op task: submitted one after another, and ``n`` at once."""
    c = d.client
    c.submit(_noop, -1, pure=False).result()       # warm the path
    t = time.perf_counter()
    for i in range(n // 10):
        c.submit(_noop, i, pure=False).result()
    latency = (time.perf_counter() - t) / (n // 10) * 1e3
    t = time.perf_counter()
    c.gather(c.map(_noop, range(n), pure=False))
    throughput = (time.perf_counter() - t) / n * 1e3
    return {"latency_ms": latency, "throughput_ms": throughput}


def _summary(rounds: list[dict[str, float]]) -> dict[str, Any]:
    rates = [r["exec_per_s"] for r in rounds]
    return {"best": max(rates), "median": statistics.median(rates),
            "wall_s_median": statistics.median(r["wall_s"] for r in rounds),
            "rounds": rates}


def measure(workers: int, runs_per_worker: int, repeat: int) -> dict[str, Any]:
    runs = runs_per_worker * workers
    jobs, clus = [], []
    for _ in range(repeat):
        jobs.append(run_command(runs, ["--jobs", str(workers)]))
        clus.append(run_command(runs, ["--cluster", f"local:{workers}"]))
    out: dict[str, Any] = {"workers": workers, "runs": runs, "jobs": _summary(jobs),
                           "cluster": _summary(clus)}
    out["ratio_median"] = out["cluster"]["median"] / out["jobs"]["median"]
    out["ratio_best"] = out["cluster"]["best"] / out["jobs"]["best"]
    return out


def overhead(workers: int, runs_per_worker: int, repeat: int) -> dict[str, Any]:
    runs = runs_per_worker * workers // 3
    t = time.monotonic()
    with cl.open_cluster(cl.parse_target(f"local:{workers}"), timeout=60) as d:
        start = time.monotonic() - t
        in_process(4 * workers, workers, d)      # workers import the model and warm up
        batched, single = [], []
        for _ in range(repeat):
            batched.append(in_process(runs, workers, d))
            saved, cl.BATCH_SECONDS = cl.BATCH_SECONDS, 0.0    # one seed per task
            try:
                single.append(in_process(runs, workers, d))
            finally:
                cl.BATCH_SECONDS = saved
        return {"workers": workers, "runs": runs, "start_s": start,
                **task_overhead(d, 1000),
                "batched": statistics.median(batched), "unbatched": statistics.median(single)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    ap.add_argument("--runs-per-worker", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--overhead-workers", type=int, default=2,
                    help="workers of the in-process overhead measurement (0: skip it)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    res: dict[str, Any] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                           "load_start": os.getloadavg()[0], "rows": []}
    for n in (int(x) for x in a.workers.split(",")):
        res["rows"].append(measure(n, a.runs_per_worker, a.repeat))
        print(f"  ... {n} workers done", file=sys.stderr, flush=True)
    if a.overhead_workers:
        res["overhead"] = overhead(a.overhead_workers, a.runs_per_worker, a.repeat)
    res["load_end"] = os.getloadavg()[0]
    if a.json:
        print(json.dumps(res, indent=2))
        return
    print(f"reference {REFERENCE}, random walk, {a.runs_per_worker} runs per worker; "
          f"exec/s best / median of {a.repeat} interleaved rounds, command wall time median")
    for r in res["rows"]:
        j, c = r["jobs"], r["cluster"]
        print(f"{r['workers']} workers: --jobs {j['best']:.1f} / {j['median']:.1f} "
              f"({j['wall_s_median']:.1f} s), --cluster local:{r['workers']} "
              f"{c['best']:.1f} / {c['median']:.1f} ({c['wall_s_median']:.1f} s); "
              f"cluster/jobs {r['ratio_median']:.0%} of the median, {r['ratio_best']:.0%} "
              f"of the best")
    o = res.get("overhead")
    if o:
        print(f"local:{o['workers']} in process: start {o['start_s']:.1f} s; a no-op task "
              f"{o['latency_ms']:.2f} ms one at a time, {o['throughput_ms']:.2f} ms each with "
              f"every worker busy; {o['runs']} runs: {o['batched']:.1f} exec/s in batches, "
              f"{o['unbatched']:.1f} with one seed per task (medians)")
    print(f"load average: {res['load_start']:.2f} at start, {res['load_end']:.2f} at end")


if __name__ == "__main__":
    main()
