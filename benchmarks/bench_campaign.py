"""Campaign throughput and runs-to-first-finding (issue 6).

Run: ``python benchmarks/bench_campaign.py [--runs N] [--cap C] [--json]``.

* executions per second on the reference scenario (``root_reload_storm`` with
  4 vCPUs, the zap worker and the RCU thread, ~300 scheduling steps, every
  checker on, stacks off as a campaign runs it): on one core (runs in this
  process), and as a ``tdpmmu fuzz``-style campaign with one worker process
  and with one per CPU, and the scaling efficiency
  ``rate_all / (cores * rate_one_job)``;
* CPU per run with no checker and each checker alone (where the time goes);
* a run with 16 vCPUs (20 managed threads) to show the thread count scales;
* for each catalogued bug whose scenario exists, the runs random walk and
  PCT need before the bug's expected report first appears (mean over a few
  campaigns with different first seeds, capped).

Figures go to BENCHMARKS.md, section "Campaigns (issue 6)".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ksync import ALL_CHECKS
from tdpmmu.bugs import CATALOGUE
from tdpmmu.campaign import CampaignSpec, run_campaign
from tdpmmu.harness import run_scenario
from tdpmmu.scenarios import SCENARIOS

REFERENCE = ("root_reload_storm", {"vcpus": 4, "pages": 4, "reloads": 1, "toggles": 0})
#: Step budget of a runs-to-first-finding run: a bug that makes the model spin
#: ends as a livelock report (not the expected kind) instead of minutes of steps.
MAX_STEPS = 20_000


def one_core(runs: int, params: dict[str, Any], checks: Any = None,
             strategy: str = "random", stacks: bool = False) -> dict[str, float]:
    """Runs in this process, back to back: wall and CPU per run.

    ``stacks=False`` is how a campaign runs them (a finding is replayed with
    stacks on before it is reported); ``stacks=True`` is ``tdpmmu run``.
    """
    name = REFERENCE[0]
    run_scenario(name, params=params, checks=checks)      # warm imports and caches
    steps = 0
    c0, w0 = time.process_time(), time.perf_counter()
    for seed in range(runs):
        steps += run_scenario(name, seed=seed, params=params, checks=checks,
                              strategy=strategy, stacks=stacks).steps
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return {"exec_per_s": runs / wall, "cpu_ms_per_run": cpu / runs * 1e3,
            "wall_ms_per_run": wall / runs * 1e3, "steps_per_run": steps / runs}


def campaign_rate(runs_per_job: int, jobs: int) -> dict[str, float]:
    """exec/s of a ``tdpmmu fuzz``-style campaign (manager, worker processes, results
    file; pool start included, so ``runs_per_job`` should be a few hundred)."""
    spec = CampaignSpec(REFERENCE[0], params=dict(REFERENCE[1]), runs=runs_per_job * jobs)
    with tempfile.TemporaryDirectory() as d:
        o = run_campaign(spec, Path(d), jobs=jobs, minimise=False)
    return {"jobs": jobs, "exec_per_s": o.executions_per_second}


def all_cores(runs_per_job: int) -> dict[str, float]:
    """The campaign on every core, and its scaling against the same campaign with one job."""
    jobs = os.cpu_count() or 1
    one = campaign_rate(runs_per_job, 1)
    many = campaign_rate(runs_per_job, jobs)
    many["one_job_exec_per_s"] = one["exec_per_s"]
    many["efficiency"] = many["exec_per_s"] / (jobs * one["exec_per_s"])
    return many


def checker_costs(runs: int, rounds: int = 5) -> dict[str, float]:
    """CPU ms per reference run (stacks on) with no checker, each alone, and all:
    rounds interleaved, so a noisy minute hits every row alike; best of ``rounds``."""
    rows = [("none", ()), *((c, (c,)) for c in ALL_CHECKS), ("all", None)]
    out = {label: float("inf") for label, _ in rows}
    for _ in range(rounds):
        for label, checks in rows:
            ms = one_core(runs, REFERENCE[1], checks, stacks=True)["cpu_ms_per_run"]
            out[label] = min(out[label], ms)
    return out


def threads16(runs: int) -> dict[str, float]:
    params = {"vcpus": 16, "pages": 32, "reloads": 1, "toggles": 0}
    r = run_scenario(REFERENCE[0], params=params, keep_runtime=True)
    res = one_core(runs, params)
    return {"managed_threads": len(r.runtime.threads), **res}


def runs_to_first(bug: Any, strategy: str, base: int, cap: int, k: int | None) -> int | None:
    spec = "random" if strategy == "random" else f"pct:d=3,k={k}"
    for n in range(cap):
        r = run_scenario(bug.scenario, bugs=(bug.name,), seed=base + n, strategy=spec,
                         max_steps=MAX_STEPS)
        if bug.expected_kind in r.kinds():
            return n + 1
    return None


def findings(cap: int, campaigns: int) -> list[dict[str, Any]]:
    rows = []
    for bug in CATALOGUE:
        if bug.scenario not in SCENARIOS or bug.expected_kind == "latency":
            rows.append({"bug": bug.name, "scenario": bug.scenario, "skipped":
                         "latency bug (tdpmmu stall)" if bug.expected_kind == "latency"
                         else "scenario not in this tree yet"})
            continue
        k = max(1, run_scenario(bug.scenario, bugs=(bug.name,), max_steps=MAX_STEPS).decisions)
        row: dict[str, Any] = {"bug": bug.name, "scenario": bug.scenario,
                               "kind": bug.expected_kind, "k": k}
        for strategy in ("random", "pct"):
            got = [runs_to_first(bug, strategy, 10_000 * (i + 1), cap, k)
                   for i in range(campaigns)]
            found = [g for g in got if g is not None]
            row[strategy] = {"found": len(found), "of": campaigns,
                             "mean_runs": statistics.mean(found) if found else None}
        rows.append(row)
        print(f"  ... {bug.name} done", file=sys.stderr, flush=True)
    return rows


#: ``--quick`` rows: (label, scenario parameters, checks, stacks).
QUICK_ROWS = (
    ("all_checkers", REFERENCE[1], None, False),
    ("all_checkers_stacks", REFERENCE[1], None, True),
    ("no_checker", REFERENCE[1], (), False),
)


def quick(a: argparse.Namespace, res: dict[str, Any]) -> None:
    """``--quick``: one-core exec/s and CPU per run, as a campaign runs them
    (every checker, stacks off), with stacks, and with no checker.  Rounds of the rows are
    interleaved so that a noisy neighbour hits them alike; best and median."""
    rounds: dict[str, list[dict[str, float]]] = {row[0]: [] for row in QUICK_ROWS}
    for _ in range(a.repeat):
        for label, params, checks, stacks in QUICK_ROWS:
            rounds[label].append(one_core(a.runs, params, checks, stacks=stacks))
    for label, got in rounds.items():
        best = max(got, key=lambda r: r["exec_per_s"])
        best["cpu_ms_per_run_min"] = min(r["cpu_ms_per_run"] for r in got)
        best["exec_per_s_median"] = statistics.median(r["exec_per_s"] for r in got)
        res[label] = best
    if a.json:
        print(json.dumps(res, indent=2))
        return
    for label, *_ in QUICK_ROWS:
        o = res[label]
        print(f"{label:19s}: {o['exec_per_s']:.1f} exec/s on one core, median "
              f"{o['exec_per_s_median']:.1f} (CPU {o['cpu_ms_per_run_min']:.1f} ms/run; best of "
              f"{a.repeat} x {a.runs} runs; {o['steps_per_run']:.0f} steps/run)")
    print(f"load average at start: {res['load']:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100, help="runs per throughput figure")
    ap.add_argument("--cap", type=int, default=60, help="runs-to-first-finding cap")
    ap.add_argument("--campaigns", type=int, default=3, help="campaigns per bug and strategy")
    ap.add_argument("--repeat", type=int, default=3, help="throughput rounds (best is kept)")
    ap.add_argument("--campaign-runs", type=int, default=300,
                    help="runs per job of the campaign figures (pool start is amortised over them)")
    ap.add_argument("--skip-findings", action="store_true")
    ap.add_argument("--quick", action="store_true",
                    help="only the one-core throughput with every checker and with none "
                         "(best of --repeat rounds of --runs runs)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    res: dict[str, Any] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                           "load": os.getloadavg()[0]}
    if a.quick:
        quick(a, res)
        return
    # Best of --repeat: on a shared machine the slowest rounds measure the neighbours.
    res["one_core"] = max((one_core(a.runs, REFERENCE[1]) for _ in range(a.repeat)),
                          key=lambda r: r["exec_per_s"])
    res["one_core_pct"] = max((one_core(a.runs, REFERENCE[1], strategy="pct:d=3,k=200")
                               for _ in range(a.repeat)), key=lambda r: r["exec_per_s"])
    res["all_cores"] = max((all_cores(a.campaign_runs) for _ in range(a.repeat)),
                           key=lambda r: r["exec_per_s"])
    res["checker_cpu_ms"] = checker_costs(max(10, a.runs // 3))
    res["threads16"] = threads16(max(5, a.runs // 10))
    if not a.skip_findings:
        res["first_finding"] = findings(a.cap, a.campaigns)
    if a.json:
        print(json.dumps(res, indent=2))
        return
    o, m = res["one_core"], res["all_cores"]
    print(f"reference {REFERENCE}: {o['steps_per_run']:.0f} steps/run")
    print(f"one core : {o['exec_per_s']:.1f} exec/s (wall {o['wall_ms_per_run']:.1f} ms, "
          f"CPU {o['cpu_ms_per_run']:.1f} ms per run; CPU-bound "
          f"{1000 / o['cpu_ms_per_run']:.0f} exec/s)")
    p = res["one_core_pct"]
    print(f"one core, PCT d=3: {p['exec_per_s']:.1f} exec/s (wall {p['wall_ms_per_run']:.1f} ms, "
          f"CPU {p['cpu_ms_per_run']:.1f} ms per run)")
    print(f"campaign ({a.campaign_runs} runs per job): {m['exec_per_s']:.1f} exec/s with "
          f"{m['jobs']} jobs, {m['one_job_exec_per_s']:.1f} with one; scaling efficiency "
          f"{m['efficiency']:.0%}")
    cost = res["checker_cpu_ms"]
    print("CPU ms/run by checker, stacks on: " + ", ".join(
        f"{k} {v:.2f}" + (f" (+{v - cost['none']:.2f})" if k != "none" else "")
        for k, v in cost.items()))
    t = res["threads16"]
    print(f"16 vCPUs: {t['managed_threads']} managed threads, {t['exec_per_s']:.1f} exec/s, "
          f"{t['steps_per_run']:.0f} steps/run")
    for row in res.get("first_finding", []):
        if "skipped" in row:
            print(f"{row['bug']}: skipped ({row['skipped']})")
            continue
        cells = []
        for s in ("random", "pct"):
            c = row[s]
            mean = "-" if c["mean_runs"] is None else f"{c['mean_runs']:.1f}"
            cells.append(f"{s} {c['found']}/{c['of']} found, mean {mean} runs")
        print(f"{row['bug']} ({row['scenario']}, {row['kind']}, k={row['k']}): "
              + "; ".join(cells))
    print(f"load average at start: {res['load']:.2f}")


if __name__ == "__main__":
    main()
