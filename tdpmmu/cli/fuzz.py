"""``tdpmmu fuzz``: a controlled-mode campaign over many seeds and worker processes."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..campaign import CampaignOutcome, CampaignSpec, run_campaign
from ..campaign.progress import Progress
from ..campaign.runner import CampaignError
from .common import (
    EXIT_CLEAN,
    EXIT_FOUND,
    UsageError,
    add_scenario_options,
    check_scenario_options,
    default_out,
    non_negative_int,
    one_line_errors,
    parse_checks,
    positive_int,
    positive_seconds,
    print_campaign,
    print_json,
    summary_line,
    write_campaign_summary,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fuzz", help="run a fuzz campaign: many seeds, controlled interleavings",
        description="Run SCENARIO under many seeds in controlled mode, spread over worker "
                    "processes. Every result is appended to OUT/results.jsonl as it arrives "
                    "(--resume continues a killed campaign); every finding is replayed once "
                    "to check it reproduces, its schedule is shrunk, and the summary prints "
                    "its report with a `tdpmmu replay` command. Exit 0 clean, 1 findings, "
                    "2 bad usage.")
    add_scenario_options(p)
    p.add_argument("--runs", type=positive_int, default=100, metavar="N",
                   help="number of runs (seeds SEED .. SEED+N-1); default 100")
    p.add_argument("--seed", type=non_negative_int, default=0, metavar="S0",
                   help="first seed; default 0")
    p.add_argument("--strategy", choices=("portfolio", "random", "pct", "pb"),
                   default="portfolio",
                   help="portfolio (default): seed S runs one of random walk, PCT at depths "
                        "2-4 and preemption-bounded sampling, by S mod 5 (ksync.portfolio); "
                        "random: uniform random walk; pct: probabilistic concurrency "
                        "testing (random priorities, DEPTH-1 change points); pb: at most 2 "
                        "preemptions at random points")
    p.add_argument("--depth", type=positive_int, default=3, metavar="D",
                   help="PCT bug depth (ordering constraints the bug needs); default 3")
    p.add_argument("--steps", type=positive_int, default=None, metavar="K",
                   help="PCT's expected decisions per run; default: measured by one run")
    p.add_argument("--jobs", "-j", type=positive_int, default=os.cpu_count() or 1,
                   metavar="J", help="worker processes; default: one per CPU")
    p.add_argument("--cluster", default=None, metavar="ADDRESS",
                   help="run the seeds on a Dask distributed cluster instead: a scheduler's "
                        "address (tcp://HOST:8786) or local:N (N Dask workers on this "
                        "machine); needs pip install 'tdpmmu[cluster]'. Results, log, "
                        "progress and shrinking stay here (shrinking uses --jobs processes)")
    p.add_argument("--cluster-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="longest wait for the cluster's scheduler and workers (to connect, or "
                        "to come back when lost); default 10")
    p.add_argument("--time-limit", type=positive_seconds, default=None, metavar="SECONDS",
                   help="stop handing out runs after this long (the rest can be resumed)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where results.jsonl, campaign.log, findings/ and summary.html go; "
                        "default tdpmmu-fuzz/SCENARIO-ZAP-[bug=..-]STRATEGY-sSEED-HASH, named "
                        "by every option but --runs (more runs: --resume the same one)")
    p.add_argument("--resume", action="store_true",
                   help="continue the campaign in --out, skipping seeds already done")
    p.add_argument("--no-minimise", dest="minimise", action="store_false",
                   help="report findings with their original schedules, unshrunk")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress line on stderr")
    p.add_argument("--json", action="store_true",
                   help="print {runs, clean, executions_per_second, findings: [{kind, title, "
                        "seed, schedule, replay_command, ...}]}")
    one_line_errors(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    params = check_scenario_options(args)
    if args.time_limit is not None and args.time_limit <= 0:
        raise UsageError(f"--time-limit {args.time_limit}: give a positive number of seconds")
    spec = CampaignSpec(scenario=args.scenario, zap=args.zap, bugs=tuple(args.bug),
                        params=params, strategy=args.strategy, depth=args.depth,
                        steps=args.steps, seed=args.seed, runs=args.runs,
                        checks=parse_checks(args.checks))
    out = Path(args.out) if args.out else default_out(spec)
    progress = Progress(args.runs, enabled=not args.quiet)
    try:
        outcome = _run_campaign(args, spec, out, progress)
    except CampaignError as e:
        raise UsageError(str(e)) from None
    except KeyboardInterrupt:
        print(f"tdpmmu fuzz: interrupted; finished runs are saved in {out}/results.jsonl "
              "(--resume continues)", file=sys.stderr)
        return 130
    findings_dir = out / "findings"
    for i, f in enumerate(outcome.findings, 1):
        findings_dir.mkdir(exist_ok=True)
        (findings_dir / f"{i}.json").write_text(json.dumps(f.saved(outcome.spec), indent=2)
                                               + "\n", encoding="utf-8")
    summary = write_campaign_summary(outcome.out, outcome.spec)
    if args.json:
        print_json({**outcome.to_json(), "summary": [str(p) for p in summary]})
    else:
        _print_summary(outcome, findings_dir)
        if summary:
            print(summary_line(summary))
    return EXIT_FOUND if outcome.findings else EXIT_CLEAN


def _run_campaign(args: argparse.Namespace, spec: CampaignSpec, out: Path,
                  progress: Progress) -> CampaignOutcome:
    """The campaign on this machine's processes or, with ``--cluster``, on a Dask cluster."""
    kw = {"jobs": args.jobs, "resume": args.resume, "time_limit": args.time_limit,
          "minimise": args.minimise, "progress": progress}
    if args.cluster is None:
        return run_campaign(spec, out, **kw)
    if not args.cluster_timeout > 0:
        raise UsageError(f"--cluster-timeout {args.cluster_timeout}: give a positive number "
                         "of seconds")
    from ..campaign import cluster  # imports Dask only when a cluster is asked for
    target = cluster.parse_target(args.cluster)
    with cluster.open_cluster(target, timeout=args.cluster_timeout) as dispatch:
        return run_campaign(spec, out, dispatch=dispatch, **kw)


def _print_summary(outcome, findings_dir: Path) -> None:
    s = outcome.spec
    bugs = ", ".join(s.bugs) or "none"
    print_campaign(outcome, f"{s.scenario} (zap {s.zap}, bugs {bugs})", findings_dir,
                   "    or: tdpmmu replay --finding {path}")
