#!/usr/bin/env python3
"""Detection power of the controlled-mode strategies, and their cost on clean runs.

``power``: for each catalogued bug (all but the ``latency`` ones, which
``tdpmmu stall`` shows) and each strategy, ``--campaigns`` campaigns run the
bug's scenario (its zap generation, its ``Bug.params``) over consecutive
seeds until a run files the bug's expected kind, at most ``--budget`` runs.
Campaign ``c`` starts at seed ``c * --stride``.  ``--program default`` makes
exactly the runs of ``tdpmmu fuzz --scenario S --zap Z --bug NAME --strategy
X --seed c*stride``: the scenario's default program, and for a ``pct`` spec
without ``k`` the k that ``tdpmmu fuzz`` measures (one random-walk run at the
first seed); ``--program variant`` (the catalogue campaigns' way, as
tools/bug_campaign.py) lets each seed pick the program too
(``variant=seed``).  Printed per bug x strategy: the share of campaigns that
found it and the median runs (schedules) to the first finding among those
that did.

``clean``: the correct model, round-robin over every scenario and zap
generation, then every distinct ``Bug.params`` set of the catalogue in
each generation that takes it, without the bug (the plan of
tools/clean_campaign.py), ``variant=seed``, each strategy given the same seeds,
side by side in one pool (chunks of the strategies alternate), every checker
on.  Printed per strategy: runs, runs with a report (zero expected), mean
decisions, and executions per second per worker (from each run's own time,
so a slow minute of the machine weighs on every strategy alike).  Each run
with a report is run once more: a controlled run is a function of its
seed, so a report that does not come back was not the model's (the
hung-task watchdog counts wall-clock seconds, and a machine loaded far past
its cores can starve a run's thread that long); only reports that come
back fail the campaign.

    python tools/strategy_power.py power --campaigns 100 --budget 500 --program default
    python tools/strategy_power.py power --campaigns 100 --budget 500 --program variant
    python tools/strategy_power.py clean --runs 2000 --strategy random --strategy portfolio

A strategy is any ``ksync.Runtime(strategy=...)`` spec (``random``,
``pct:d=3,k=300``, ``pb:c=1,k=300``, ``portfolio``) or a portfolio of such
specs joined by ``|`` (``random|pct:d=3,k=300``).  Exit status 0 when every
bug met ``--target`` under the first strategy (``power``) or no clean run
filed a report that came back when run again (``clean``), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from ksync.errors import KsyncError
from ksync.portfolio import PortfolioStrategy
from ksync.strategy import make_strategy
from tdpmmu.bugs import BY_NAME, CATALOGUE
from tdpmmu.harness import estimate_steps, run_scenario
from tdpmmu.kvm import ZAP_MODES
from tdpmmu.scenarios import SCENARIOS

DEFAULT_STRATEGIES = ("portfolio", "random", "pct", "pb")


def _strategy(spec: str, seed: int) -> Any:
    """What ``run_scenario(strategy=...)`` takes for ``spec`` (a ``|`` list is a portfolio)."""
    if "|" in spec:
        return PortfolioStrategy(seed, spec.split("|"))
    return spec


def _campaign(args: tuple[str, str, int, int, bool]) -> tuple[str, str, int, bool, int, float]:
    """One campaign of bug ``name`` under ``spec``: runs until the expected kind, or the budget."""
    name, spec, first_seed, budget, vary = args
    bug = BY_NAME[name]
    t0 = time.perf_counter()
    if not vary and spec.partition(":")[0] == "pct" and "k=" not in spec:
        # What the fuzz runner does for PCT: k is one random-walk run's decisions.
        k = estimate_steps(bug.scenario, zap=bug.zap, bugs=(name,), params=dict(bug.params),
                           seed=first_seed)
        spec = f"{spec}{',' if ':' in spec else ':'}k={k}"
    for i in range(budget):
        seed = first_seed + i
        params = {"variant": seed, **dict(bug.params)} if vary else dict(bug.params)
        r = run_scenario(bug.scenario, zap=bug.zap, seed=seed, strategy=_strategy(spec, seed),
                         bugs=(name,), params=params, stacks=False)
        if bug.expected_kind in r.kinds():
            return name, args[1], first_seed, True, i + 1, time.perf_counter() - t0
    return name, args[1], first_seed, False, budget, time.perf_counter() - t0


def power(a: argparse.Namespace) -> int:
    names = a.bug or [b.name for b in CATALOGUE if b.expected_kind != "latency"]
    vary = a.program == "variant"
    tasks = [(n, s, c * a.stride, a.budget, vary) for c in range(a.campaigns)
             for n in names for s in a.strategy]
    found: dict[tuple[str, str], list[int]] = {(n, s): [] for n in names for s in a.strategy}
    runs: dict[tuple[str, str], int] = dict.fromkeys(found, 0)
    secs: dict[tuple[str, str], float] = dict.fromkeys(found, 0.0)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(a.jobs) as ex:
        for name, spec, _, hit, n, dt in ex.map(_campaign, tasks, chunksize=4):
            runs[(name, spec)] += n
            secs[(name, spec)] += dt
            if hit:
                found[(name, spec)].append(n)
    wall = time.perf_counter() - t0
    rows = [{"bug": n, "strategy": s, "campaigns": a.campaigns, "budget": a.budget,
             "found": len(found[(n, s)]), "share": len(found[(n, s)]) / a.campaigns,
             "median_runs_to_first": (statistics.median(found[(n, s)])
                                      if found[(n, s)] else None),
             "program": a.program, "runs": runs[(n, s)], "seconds": round(secs[(n, s)], 1)}
            for n in names for s in a.strategy]
    if a.json:
        print(json.dumps({"rows": rows, "wall_seconds": round(wall, 1)}, indent=1))
    else:
        _print_power(rows, names, a, wall)
    first = a.strategy[0]
    return 0 if all(r["share"] >= a.target for r in rows if r["strategy"] == first) else 1


def _print_power(rows: list[dict[str, Any]], names: list[str], a: argparse.Namespace,
                 wall: float) -> None:
    cell = {(r["bug"], r["strategy"]): r for r in rows}
    width = max(14, *(len(s) + 2 for s in a.strategy))
    print(f"share of {a.campaigns} campaigns finding the bug within {a.budget} runs, "
          f"median runs to the first finding ({a.program} program)")
    print(f"| {'bug':30} |" + "".join(f" {s:>{width}} |" for s in a.strategy))
    print(f"|{'-' * 32}|" + "".join(f"{'-' * (width + 1)}:|" for _ in a.strategy))
    for n in names:
        out = []
        for s in a.strategy:
            r = cell[(n, s)]
            med = r["median_runs_to_first"]
            out.append(f"{r['share']:.0%} / {'-' if med is None else f'{med:g}'}")
        print(f"| {n:30} |" + "".join(f" {c:>{width}} |" for c in out))
    total = sum(r["runs"] for r in rows)
    print(f"{total} runs, {wall:.0f} s wall, {a.jobs} jobs")


Params = tuple[tuple[str, object], ...]


def clean_combos(bug_params: bool = True) -> list[tuple[str, str, Params]]:
    """(scenario, zap, params): each scenario and generation at its defaults, then each
    distinct ``Bug.params`` set in every generation that takes it."""
    out: list[tuple[str, str, Params]] = [(n, z, ()) for n in SCENARIOS for z in ZAP_MODES]
    seen = set()
    for b in CATALOGUE if bug_params else ():
        if not b.params or (b.scenario, b.params) in seen:
            continue
        seen.add((b.scenario, b.params))
        # The system work queue exists only in the async generation.
        zaps = ("async",) if dict(b.params).get("zap_wq") == "system" else ZAP_MODES
        out += [(b.scenario, z, b.params) for z in zaps]
    return out


def _clean_chunk(args: tuple[str, list[tuple[str, str, Params, int]]]) -> tuple[str, list]:
    spec, items = args
    out = []
    for name, zap, params, seed in items:
        t0 = time.perf_counter()
        r = run_scenario(name, zap=zap, seed=seed, strategy=_strategy(spec, seed),
                         params={"variant": seed, **dict(params)}, stacks=False)
        what = r.reports[0].title if r.reports else r.error.splitlines()[-1:]
        label = name + "".join(f" {k}={v}" for k, v in params)
        out.append((label, zap, seed, r.kinds(), r.decisions, time.perf_counter() - t0, what))
    return spec, out


def _reproduces(f: dict[str, Any], spec: str, params: Params) -> bool:
    """Whether clean-run finding ``f`` files the same kinds when its seed runs again."""
    name = f["scenario"].split(" ")[0]
    r = run_scenario(name, zap=f["zap"], seed=f["seed"], strategy=_strategy(spec, f["seed"]),
                     params={"variant": f["seed"], **dict(params)}, stacks=False)
    return r.kinds() == f["kinds"]


def clean(a: argparse.Namespace) -> int:
    combos = clean_combos(a.bug_params)
    items = [(*combos[i % len(combos)], a.first_seed + i) for i in range(a.runs)]
    chunks = [items[i:i + 25] for i in range(0, len(items), 25)]
    # Alternate the strategies chunk by chunk: both see the same machine minute.
    tasks = [(s, c) for c in chunks for s in a.strategy]
    per = {s: {"runs": 0, "dirty": 0, "decisions": 0, "seconds": 0.0, "findings": []}
           for s in a.strategy}
    t0 = time.perf_counter()
    with ProcessPoolExecutor(a.jobs) as ex:
        for spec, res in ex.map(_clean_chunk, tasks):
            row = per[spec]
            for name, zap, seed, kinds, dec, dt, what in res:
                row["runs"] += 1
                row["decisions"] += dec
                row["seconds"] += dt
                if kinds:
                    row["dirty"] += 1
                    row["findings"].append({"scenario": name, "zap": zap, "seed": seed,
                                            "kinds": kinds, "what": what})
    wall = time.perf_counter() - t0
    params_of = {(n + "".join(f" {k}={v}" for k, v in ps), z): ps for n, z, ps in combos}
    for spec, row in per.items():
        for f in row["findings"]:
            f["reproduces"] = _reproduces(f, spec, params_of[(f["scenario"], f["zap"])])
        row["reproduced"] = sum(f["reproduces"] for f in row["findings"])
    doc = {"runs_per_strategy": a.runs, "wall_seconds": round(wall, 1), "jobs": a.jobs,
           "combos": len(combos),
           "strategies": [{"strategy": s, "runs": r["runs"], "dirty": r["dirty"],
                           "reproduced": r["reproduced"],
                           "mean_decisions": round(r["decisions"] / max(1, r["runs"]), 1),
                           "ms_per_run": round(r["seconds"] / max(1, r["runs"]) * 1e3, 2),
                           "executions_per_second_per_job":
                               round(r["runs"] / max(r["seconds"], 1e-9), 1),
                           "findings": r["findings"][:10]}
                          for s, r in per.items()]}
    if a.json:
        print(json.dumps(doc, indent=1))
    else:
        base = doc["strategies"][0]["executions_per_second_per_job"]
        for r in doc["strategies"]:
            print(f"{r['strategy']:24} runs {r['runs']:6} dirty {r['dirty']:3} "
                  f"(reproduced {r['reproduced']}) "
                  f"decisions {r['mean_decisions']:8.1f} {r['ms_per_run']:7.2f} ms/run "
                  f"{r['executions_per_second_per_job']:7.1f} exec/s/job "
                  f"({r['executions_per_second_per_job'] / base:.1%} of the first)")
            for f in r["findings"]:
                print("  finding:", f)
        print(f"{wall:.0f} s wall, {a.jobs} jobs")
    return 0 if all(r["reproduced"] == 0 for r in doc["strategies"]) else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pw = sub.add_parser("power", help="share of campaigns finding each bug, per strategy")
    pw.add_argument("--bug", action="append", help="only this bug (repeatable)")
    pw.add_argument("--campaigns", type=int, default=100)
    pw.add_argument("--budget", type=int, default=500, help="runs per campaign at most")
    pw.add_argument("--stride", type=int, default=100_000,
                    help="seed distance between campaigns")
    pw.add_argument("--target", type=float, default=0.95,
                    help="share wanted of the first strategy")
    pw.add_argument("--program", choices=("default", "variant"), default="default",
                    help="default: the scenario's default program, as tdpmmu fuzz runs it; "
                         "variant: each seed picks the program (variant=seed)")
    cl = sub.add_parser("clean", help="clean runs and executions/s, strategies side by side")
    cl.add_argument("--runs", type=int, default=2000, help="runs per strategy")
    cl.add_argument("--first-seed", type=int, default=0)
    cl.add_argument("--no-bug-params", dest="bug_params", action="store_false",
                    help="only each scenario's default parameters")
    for q in (pw, cl):
        q.add_argument("--strategy", action="append",
                       help=f"strategy spec (repeatable); default {', '.join(DEFAULT_STRATEGIES)}"
                            " for power, random and portfolio for clean")
        q.add_argument("--jobs", type=int, default=2, help="worker processes")
        q.add_argument("--json", action="store_true", help="one JSON document on stdout")
    a = p.parse_args(argv)
    if a.strategy is None:
        a.strategy = list(DEFAULT_STRATEGIES if a.cmd == "power" else ("random", "portfolio"))
    for s in a.strategy:
        try:
            for part in s.split("|"):
                make_strategy(part, 0, None)
        except KsyncError as e:
            p.error(str(e))
    if a.jobs < 1 or (a.cmd == "power" and (a.campaigns < 1 or a.budget < 1)) or (
            a.cmd == "clean" and a.runs < 1):
        p.error("counts must be positive")
    if a.cmd == "power":
        unknown = [n for n in a.bug or () if n not in BY_NAME]
        if unknown:
            p.error(f"unknown bug(s) {', '.join(unknown)}")
        return power(a)
    return clean(a)


if __name__ == "__main__":
    sys.exit(main())
