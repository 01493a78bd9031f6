#!/usr/bin/env python3
"""Clean campaign: the correct model over many controlled schedules, every checker on.

Runs every scenario in every zap generation over consecutive seeds, each
seed also picking the scenario's program (``variant=seed``); random
strategy, ``--pct-share`` of the runs use PCT instead; in ``--jobs``
processes, and counts runs with any report or model error — zero expected.

    python tools/clean_campaign.py --runs 10000 --jobs 2 [--json]

Exit status 0 when no run reported, 1 otherwise (the first findings are
printed with the arguments that replay them).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from tdpmmu.harness import run_scenario
from tdpmmu.kvm import ZAP_MODES
from tdpmmu.scenarios import SCENARIOS


def _chunk(args: tuple[list[tuple[str, str, int, str]]]) -> list[tuple]:
    (items,) = args
    out = []
    for name, zap, seed, strategy in items:
        t0 = time.perf_counter()
        r = run_scenario(name, zap=zap, seed=seed, strategy=strategy, params={"variant": seed})
        out.append((name, zap, seed, strategy, r.kinds(), r.steps, time.perf_counter() - t0,
                    (r.reports[0].title if r.reports else r.error.splitlines()[-1:])))
    return out


def plan(runs: int, first_seed: int, pct_share: float) -> list[tuple[str, str, int, str]]:
    """Round-robin over (scenario, zap) so that any prefix covers them all evenly."""
    combos = [(n, z) for n in SCENARIOS for z in ZAP_MODES]
    every = round(1 / pct_share) if pct_share > 0 else 0
    return [(*combos[i % len(combos)], first_seed + i,
             "pct" if every and i % every == every - 1 else "random") for i in range(runs)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=10_000)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--pct-share", type=float, default=0.0,
                   help="fraction of runs under the PCT strategy (0 = all random)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    if a.runs < 1 or a.jobs < 1 or not 0 <= a.pct_share <= 1:
        p.error("--runs and --jobs must be positive, --pct-share in [0, 1]")
    items = plan(a.runs, a.first_seed, a.pct_share)
    chunks = [items[i:i + 50] for i in range(0, len(items), 50)]
    t0 = time.perf_counter()
    per = collections.defaultdict(lambda: [0, 0, 0, 0.0])   # runs, dirty, steps, seconds
    findings = []
    with ProcessPoolExecutor(a.jobs) as ex:
        for res in ex.map(_chunk, [(c,) for c in chunks]):
            for name, zap, seed, strategy, kinds, steps, secs, what in res:
                row = per[(name, zap)]
                row[0] += 1
                row[2] += steps
                row[3] += secs
                if kinds:
                    row[1] += 1
                    findings.append({"scenario": name, "zap": zap, "seed": seed,
                                     "strategy": strategy, "kinds": kinds, "what": what})
    wall = time.perf_counter() - t0
    total = sum(r[0] for r in per.values())
    doc = {"runs": total, "runs_with_reports": len(findings), "wall_seconds": round(wall, 1),
           "runs_per_second": round(total / wall, 1),
           "per_scenario": [{"scenario": n, "zap": z, "runs": r[0], "dirty": r[1],
                             "mean_steps": round(r[2] / r[0]), "mean_ms": round(r[3] / r[0] * 1e3, 1)}
                            for (n, z), r in sorted(per.items())],
           "findings": findings[:20]}
    if a.json:
        print(json.dumps(doc, indent=1))
    else:
        for row in doc["per_scenario"]:
            print(f"{row['scenario']:18} {row['zap']:9} runs {row['runs']:6} dirty {row['dirty']:3} "
                  f"steps {row['mean_steps']:6} {row['mean_ms']:7.1f} ms/run")
        print(f"{total} runs, {len(findings)} with reports, {wall:.0f} s wall "
              f"({doc['runs_per_second']} runs/s, {a.jobs} jobs)")
        for f in findings[:10]:
            print("  finding:", f)
    return 0 if not findings else 1


if __name__ == "__main__":
    sys.exit(main())
