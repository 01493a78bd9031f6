"""What a strategy costs on clean runs: the portfolio against the random walk (issue 17).

Run: ``python benchmarks/bench_strategy.py [--runs N] [--rounds R] [--json]``.

* the cost of one ``choose`` call of each strategy on a three-thread
  runnable list (the hot path a decision takes);
* CPU per run and executions per CPU second of the correct model under
  each strategy, round-robin over every scenario and zap generation with
  ``variant=seed`` (as tools/clean_campaign.py), stacks off as a campaign
  runs.  The strategies alternate round by round in this one process, on the
  same seeds, so a busy minute of the machine weighs on each alike; CPU time
  (``process_time``, every managed thread included) rather than wall time,
  for the same reason.  A strategy changes the schedules and so the number
  of decisions a run makes: that is part of its cost and is shown too.

Figures go to BENCHMARKS.md, section "Strategies: detection power and cost
(issue 17)".
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from typing import Any

from ksync.strategy import make_strategy
from tdpmmu.harness import run_scenario
from tdpmmu.kvm import ZAP_MODES
from tdpmmu.scenarios import SCENARIOS

STRATEGIES = ("random", "portfolio", "pct", "pb")


class _T:
    """A stand-in thread: strategies read ``tid`` only."""

    def __init__(self, tid: int) -> None:
        self.tid = tid


def choose_cost(n: int = 200_000) -> dict[str, float]:
    """CPU nanoseconds per ``choose`` call, per strategy (seed 1: portfolio runs PCT there)."""
    threads = [_T(0), _T(1), _T(2)]
    out = {}
    for spec in STRATEGIES:
        s = make_strategy(spec, 1, None)
        choose = s.choose
        t0 = time.process_time()
        for step in range(n):
            choose(threads, threads[step % 3], step)
        out[spec] = (time.process_time() - t0) / n * 1e9
    return out


def clean_runs(runs: int, rounds: int) -> dict[str, dict[str, float]]:
    """CPU per run of the clean plan, each strategy in turn round by round."""
    combos = [(n, z) for n in SCENARIOS for z in ZAP_MODES]
    plan = [(*combos[i % len(combos)], i) for i in range(runs)]
    run_scenario(plan[0][0], zap=plan[0][1], stacks=False)       # warm imports and caches
    acc = {s: {"cpu": 0.0, "runs": 0, "decisions": 0, "dirty": 0} for s in STRATEGIES}
    per_round = -(-runs // rounds)
    for r in range(rounds):
        chunk = plan[r * per_round:(r + 1) * per_round]
        for spec in STRATEGIES:
            a = acc[spec]
            c0 = time.process_time()
            for name, zap, seed in chunk:
                res = run_scenario(name, zap=zap, seed=seed, strategy=spec,
                                   params={"variant": seed}, stacks=False)
                a["decisions"] += res.decisions
                a["dirty"] += not res.clean
            a["cpu"] += time.process_time() - c0
            a["runs"] += len(chunk)
    return {s: {"runs": a["runs"], "dirty": a["dirty"],
                "cpu_ms_per_run": round(a["cpu"] / a["runs"] * 1e3, 3),
                "exec_per_cpu_s": round(a["runs"] / a["cpu"], 1),
                "vs_random": round(a["runs"] / a["cpu"]
                                   / (acc["random"]["runs"] / acc["random"]["cpu"]), 3),
                "mean_decisions": round(a["decisions"] / a["runs"], 1)}
            for s, a in acc.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=1000, help="clean runs per strategy")
    p.add_argument("--rounds", type=int, default=10, help="rounds the strategies alternate in")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    if a.runs < 1 or not 1 <= a.rounds <= a.runs:
        p.error("--runs must be positive and --rounds in [1, runs]")
    doc: dict[str, Any] = {"machine": f"{platform.machine()} {platform.python_version()}",
                           "choose_ns": {k: round(v, 1) for k, v in choose_cost().items()},
                           "clean": clean_runs(a.runs, a.rounds)}
    if a.json:
        print(json.dumps(doc, indent=1))
        return 0
    print("choose() ns/call: " + ", ".join(f"{k} {v}" for k, v in doc["choose_ns"].items()))
    for s, r in doc["clean"].items():
        print(f"{s:10} runs {r['runs']:6} dirty {r['dirty']:3} decisions {r['mean_decisions']:8.1f} "
              f"{r['cpu_ms_per_run']:7.2f} CPU ms/run {r['exec_per_cpu_s']:7.1f} exec/CPU s "
              f"({r['vs_random']:.1%} of random)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
