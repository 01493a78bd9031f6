#!/usr/bin/env python3
"""Bug campaigns: for each catalogued bug, many campaigns over distinct seed ranges.

Each campaign runs the bug's scenario (in the bug's zap generation, with
its scenario parameters ``Bug.params``) over consecutive seeds until a run
shows the bug's expected kind, at most ``--budget`` runs.  Reported per bug:
campaigns that found it (success rate), and the mean / median / worst
runs-to-first-finding.  Campaign ``c`` of a bug starts at seed ``c * --stride``.

``--mode catalogue`` (the default) uses the bug's own strategy (``Bug.strategy``)
and lets each seed pick the program too (``variant=seed``).  ``--mode fuzz-pct``
makes exactly the runs of ``tdpmmu fuzz --scenario S --zap Z --bug NAME
--strategy pct --depth D --seed c*stride --runs BUDGET``: the scenario's default
program, PCT with ``k`` measured by one random-walk run (see
``tdpmmu.scenarios.findings.fuzz_campaign``).

    python tools/bug_campaign.py --campaigns 20 --budget 500 [--bug NAME ...] [--jobs 2]
    python tools/bug_campaign.py --mode fuzz-pct --campaigns 100 --budget 500 --new

Exit status 0 when every bug met ``--target`` (success rate), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from tdpmmu.bugs import BY_NAME, CATALOGUE
from tdpmmu.scenarios.findings import campaign, fuzz_campaign

#: The entries issue 15 asks about: the eight grown from upstream fixes and
#: the two named in the issue (``--new`` selects them).
ISSUE_15 = ("root-not-freed-after-yield", "fault-on-invalid-root",
            "zap-all-skips-top-level-sptes", "root-iter-filters-address-space",
            "zap-invalidated-assumes-reference", "plain-store-of-volatile-spte",
            "iter-advances-after-restart", "notifier-unmap-without-root-ref",
            "flush-under-mmu-lock", "skip-invalid-roots-on-notifier")


def _one(args: tuple[str, int, int, str, int]) -> tuple[str, int, bool, int, tuple[str, ...],
                                                        float]:
    name, first_seed, budget, mode, depth = args
    t0 = time.perf_counter()
    if mode == "fuzz-pct":
        r = fuzz_campaign(name, first_seed, budget, depth=depth)
    else:
        r = campaign(name, first_seed, budget)
    return name, first_seed, r.found, r.runs, r.kinds, time.perf_counter() - t0


def _fmt(v: object) -> str:
    return "-" if v is None else f"{v:.1f}" if isinstance(v, float) else str(v)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bug", action="append", help="only this bug (repeatable)")
    p.add_argument("--campaigns", type=int, default=20, help="campaigns per bug")
    p.add_argument("--budget", type=int, default=500, help="runs per campaign at most")
    p.add_argument("--stride", type=int, default=100_000, help="seed distance between campaigns")
    p.add_argument("--jobs", type=int, default=2, help="worker processes")
    p.add_argument("--target", type=float, default=0.95, help="success rate wanted")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.add_argument("--mode", choices=("catalogue", "fuzz-pct"), default="catalogue",
                   help="catalogue: each bug's strategy, variant=seed; fuzz-pct: the runs "
                        "`tdpmmu fuzz --strategy pct` makes")
    p.add_argument("--depth", type=int, default=3, help="PCT depth under --mode fuzz-pct")
    p.add_argument("--new", action="store_true",
                   help="the bugs of issue 15 (the eight new ones and the two it names)")
    a = p.parse_args(argv)
    names = a.bug or (list(ISSUE_15) if a.new else [b.name for b in CATALOGUE])
    unknown = [n for n in names if n not in BY_NAME]
    if unknown or a.campaigns < 1 or a.budget < 1 or a.jobs < 1:
        p.error(f"unknown bug(s) {unknown}" if unknown else "counts must be positive")
    tasks = [(n, c * a.stride, a.budget, a.mode, a.depth) for n in names
             for c in range(a.campaigns)]
    results: dict[str, list] = {n: [] for n in names}
    t0 = time.perf_counter()
    with ProcessPoolExecutor(a.jobs) as ex:
        for name, seed, found, runs, kinds, secs in ex.map(_one, tasks):
            results[name].append((seed, found, runs, kinds, secs))
    rows = []
    for n in names:
        rs = results[n]
        hits = [r[2] for r in rs if r[1]]
        rows.append({
            "bug": n, "scenario": BY_NAME[n].scenario, "zap": BY_NAME[n].zap,
            "strategy": (f"pct:d={a.depth}" if a.mode == "fuzz-pct" else BY_NAME[n].strategy),
            "mode": a.mode, "params": dict(BY_NAME[n].params),
            "expected_kind": BY_NAME[n].expected_kind,
            "campaigns": len(rs), "budget": a.budget, "found": len(hits),
            "success_rate": len(hits) / len(rs),
            "runs_to_first_mean": statistics.mean(hits) if hits else None,
            "runs_to_first_median": statistics.median(hits) if hits else None,
            "runs_to_first_max": max(hits) if hits else None,
            "runs_total": sum(r[2] for r in rs),
            "seconds": round(sum(r[4] for r in rs), 1),
            "kinds_seen": sorted({k for r in rs for k in r[3]}),
        })
    wall = time.perf_counter() - t0
    if a.json:
        print(json.dumps({"rows": rows, "wall_seconds": round(wall, 1)}, indent=1))
    else:
        print(f"{'bug':32} {'kind':28} {'rate':>6} {'mean':>6} {'med':>5} {'max':>5} {'runs':>6}")
        for r in rows:
            print(f"{r['bug']:32} {r['expected_kind']:28} {r['success_rate']:6.0%} "
                  f"{_fmt(r['runs_to_first_mean']):>6} {_fmt(r['runs_to_first_median']):>5} "
                  f"{_fmt(r['runs_to_first_max']):>5} {r['runs_total']:>6}")
        print(f"{len(tasks)} campaigns, budget {a.budget}, mode {a.mode}, {wall:.0f} s wall, "
              f"{a.jobs} jobs")
    return 0 if all(r["success_rate"] >= a.target for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
