"""``tdpmmu run SCRIPT.py``: a plain script, run with a runtime already entered.

The script's top level runs on the main thread of a ``ksync.Runtime`` built
from the options, so it just uses the primitives (``ksync.SpinLock``,
``ksync.current_runtime().spawn``, ``tdpmmu.Kvm``...).  When it ends, every
thread it started is joined and the checkers' reports are printed.

``--fuzz N`` runs the script under N schedules as a campaign instead (the
machinery of ``tdpmmu fuzz``: worker processes, a resumable results file,
findings replayed, deduplicated and shrunk, a replay command for each, and
the summary page); ``--strategy explore`` runs it under every schedule within
a preemption bound.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import runpy
import sys
from pathlib import Path
from typing import Any

import ksync

from ..campaign import CampaignSpec, run_campaign
from ..campaign.progress import Progress
from ..campaign.runner import CampaignError, CampaignOutcome
from ..campaign.script import execute_script
from ..teach.cli_options import (
    add_teach_options,
    check_teach_options,
    emit_teach_outputs,
    wants_trace,
)
from .common import (
    EXIT_CLEAN,
    EXIT_FOUND,
    EXIT_USAGE,
    UsageError,
    default_out,
    non_negative_int,
    one_line_errors,
    parse_checks,
    positive_int,
    positive_seconds,
    print_campaign,
    print_json,
    render_report,
    summary_line,
    write_campaign_summary,
)

#: Options that only a --fuzz campaign takes (dest, as the user spells it).
_CAMPAIGN_ONLY = (("jobs", "--jobs"), ("out", "--out"), ("resume", "--resume"),
                  ("minimise", "--no-minimise"), ("time_limit", "--time-limit"),
                  ("quiet", "--quiet"))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="run a plain script under a runtime and print the reports",
        description="Execute SCRIPT.py with a ksync runtime already entered on its main "
                    "thread, then print what the checkers reported and the schedule string "
                    "that replays the run (controlled mode). With --fuzz N, run it under N "
                    "schedules as a campaign (as `tdpmmu fuzz` runs a scenario). Arguments after "
                    "`--` are the script's. Exit 0 clean, 1 reports or findings (or the "
                    "script raised), 2 bad usage.")
    p.add_argument("script", metavar="SCRIPT.py", help="the Python script to run")
    p.add_argument("script_args", nargs="*", metavar="ARGS",
                   help="arguments passed to the script as sys.argv[1:], right after "
                        "SCRIPT.py (after `--` when they start with a dash)")
    p.add_argument("--mode", choices=ksync.runtime.MODES, default="controlled",
                   help="controlled (one thread at a time, replayable; default) or free "
                        "(real concurrency)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed; default 0")
    p.add_argument("--strategy", choices=("portfolio", "random", "pct", "pb", "explore"),
                   default="portfolio",
                   help="controlled-mode scheduler: portfolio (default; seed S runs one "
                        "of random walk, PCT and preemption-bounded sampling by S mod 5, "
                        "and seed 0 is the random walk), random walk, PCT, pb "
                        "(preemption-bounded sampling), or explore (run the "
                        "script under every schedule with at most --preemptions "
                        "preemptions; for tiny scripts)")
    p.add_argument("--depth", type=positive_int, default=3, help="PCT bug depth; default 3")
    p.add_argument("--steps", type=positive_int, default=None, metavar="K",
                   help="PCT's expected decisions; default: measured by a first, silent run")
    p.add_argument("--preemptions", type=non_negative_int, default=2, metavar="C",
                   help="explore: the preemption bound; every schedule with at most C "
                        "preemptions is run once (default 2)")
    p.add_argument("--max-runs", type=positive_int, default=10_000, metavar="N",
                   help="explore: stop after N runs (the summary says if it was complete)")
    p.add_argument("--schedule", metavar="STRING",
                   help="replay this schedule string (controlled mode)")
    p.add_argument("--checks", default=None, metavar="LIST",
                   help="comma-separated checkers (lockdep, races, uaf, refcount, "
                        "atomic_sleep, hung), or all (default) or none")
    p.add_argument("--noise", type=float, default=0.0,
                   help="free mode: probability of a random yield at each scheduling point")
    p.add_argument("--json", action="store_true",
                   help="print {reports: [{kind, title, text, ...}], schedule}; with --fuzz, "
                        "the `tdpmmu fuzz --json` document")
    g = p.add_argument_group("campaign (--fuzz)")
    g.add_argument("--fuzz", type=positive_int, default=None, metavar="N",
                   help="run the script under N schedules (seeds SEED .. SEED+N-1, any "
                        "--strategy but explore) as a campaign: findings replayed, "
                        "deduplicated and shrunk, each printed with a replay command")
    g.add_argument("--jobs", "-j", type=positive_int, default=None, metavar="J",
                   help="worker processes; default: one per CPU")
    g.add_argument("--out", default=None, metavar="DIR",
                   help="where results.jsonl, findings/ and summary.html go; default "
                        "tdpmmu-fuzz/script-NAME-STRATEGY-sSEED-HASH")
    g.add_argument("--resume", action="store_true", default=None,
                   help="continue the campaign in --out, skipping seeds already done")
    g.add_argument("--no-minimise", dest="minimise", action="store_false", default=None,
                   help="report findings with their original schedules, unshrunk")
    g.add_argument("--time-limit", type=positive_seconds, default=None, metavar="SECONDS",
                   help="stop handing out runs after this long (the rest can be resumed)")
    g.add_argument("--quiet", "-q", action="store_true", default=None,
                   help="no progress line on stderr")
    add_teach_options(p)
    one_line_errors(p)
    p.set_defaults(func=run)


def _check_script(text: str) -> Path:
    """The script's path, refused in one line if it is missing, unreadable or not Python."""
    path = Path(text)
    if path.is_dir():
        raise UsageError(f"{text}: is a directory, not a script")
    if not path.is_file():
        raise UsageError(f"{text}: no such script")
    try:
        compile(path.read_bytes(), str(path), "exec")
    except OSError as e:
        raise UsageError(f"{text}: cannot be read ({e.strerror})") from None
    except (SyntaxError, ValueError) as e:
        raise UsageError(f"{text}: cannot be compiled ({e})") from None
    return path


def _check_fuzz_options(args: argparse.Namespace) -> None:
    """Refuse options that contradict a campaign, or campaign options without one."""
    if args.fuzz is None:
        given = [flag for dest, flag in _CAMPAIGN_ONLY if getattr(args, dest) is not None]
        if given:
            raise UsageError(f"{given[0]} is a campaign option: add --fuzz N")
        return
    if args.strategy == "explore":
        raise UsageError("--fuzz N samples N schedules; --strategy explore enumerates "
                         "them itself: pick one")
    clash = [flag for flag, on in (("--mode free", args.mode != "controlled"),
                                   ("--schedule", args.schedule is not None),
                                   ("--trace", getattr(args, "trace", False)),
                                   ("--timeline", getattr(args, "timeline", None)))
             if on]
    if clash:
        raise UsageError(f"--fuzz runs many controlled schedules; {clash[0]} is for one run "
                         "(replay a finding with it)")


def run(args: argparse.Namespace) -> int:
    path = _check_script(args.script)
    _check_fuzz_options(args)
    checks = parse_checks(args.checks)
    if args.fuzz is not None:
        return _fuzz(path, args, checks)
    check_teach_options(args)
    if not 0.0 <= args.noise <= 1.0:
        raise UsageError(f"--noise {args.noise}: a probability in [0, 1]")
    schedule = None
    if args.schedule is not None:
        try:
            ksync.decode_schedule(args.schedule)
        except ksync.KsyncError as e:
            raise UsageError(f"--schedule: {e}") from None
        schedule = args.schedule
    strategy = args.strategy
    if strategy == "explore":
        if args.mode != "controlled" or schedule is not None:
            raise UsageError("--strategy explore needs --mode controlled and no --schedule")
        return _explore(path, args, checks)
    kw = dict(mode=args.mode, seed=args.seed, checks=checks, noise=args.noise)
    if strategy == "pct" and schedule is None and args.mode == "controlled":
        k = args.steps
        if k is None:   # measure k with a first run whose output nobody sees
            with contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()):
                first, _ = execute_script(path, args.script_args, strategy="random", **kw)
            k = max(1, len(first.decisions))
        strategy = f"pct:d={args.depth},k={k}"
    # With --json, stdout carries one JSON document: the script's prints go to stderr.
    out = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    try:
        with out:
            rt, error = execute_script(path, args.script_args, strategy=strategy,
                                       schedule=schedule, trace=wants_trace(args), **kw)
    except ksync.ReplayDivergence as e:
        print(f"tdpmmu run: {e}", file=sys.stderr)
        return EXIT_USAGE
    if wants_trace(args):
        emit_teach_outputs(args, rt, title=f"tdpmmu run {path.name} (seed {args.seed})")
    if args.json:
        print_json({"reports": [r.to_dict() for r in rt.reports], "schedule": rt.schedule,
                    "error": error})
    else:
        for r in rt.reports:
            print(render_report(r))
        if error:
            print("error: " + error)
        print(f"{len(rt.reports)} report(s)"
              + (f"; schedule: {rt.schedule}" if args.mode == "controlled" else ""))
    return EXIT_FOUND if rt.reports or error else EXIT_CLEAN


def _explore(path: Path, args: argparse.Namespace, checks: Any) -> int:
    """``--strategy explore``: every schedule within the preemption bound (ksync.explore)."""
    from ksync.explore import explore

    def body(rt: ksync.Runtime) -> None:
        try:
            runpy.run_path(str(path), run_name="__main__")
        except SystemExit as e:
            if e.code not in (None, 0):
                raise RuntimeError(f"the script exited with status {e.code}") from None

    old_argv, old_path = sys.argv, list(sys.path)
    sys.argv = [str(path), *args.script_args]
    sys.path.insert(0, str(path.parent))
    try:
        # The script runs once per schedule: its own output would drown the summary.
        with contextlib.redirect_stdout(io.StringIO()):
            res = explore(body, preemption_bound=args.preemptions, checks=checks,
                          max_runs=args.max_runs)
    finally:
        sys.argv, sys.path[:] = old_argv, old_path
    distinct: dict[tuple[str, str], Any] = {}
    for f in res.failures:
        key = (f.reports[0].kind, f.reports[0].title)
        if key not in distinct or f.preemptions < distinct[key].preemptions:
            distinct[key] = f
    if args.json:
        print_json({"reports": [r.to_dict() for f in distinct.values() for r in f.reports[:1]],
                    "schedule": next(iter(distinct.values())).schedule if distinct else "",
                    "explored": {"runs": res.runs, "complete": res.complete,
                                 "preemption_bound": args.preemptions,
                                 "failing_schedules": len(res.failures),
                                 "failures": [{"kind": k, "title": t, "schedule": f.schedule,
                                               "preemptions": f.preemptions}
                                              for (k, t), f in distinct.items()]}})
    else:
        for f in distinct.values():
            print(render_report(f.reports[0]))
            print(f"  with {f.preemptions} preemption(s); replay: tdpmmu run {path} "
                  f"--schedule {f.schedule}")
        done = "all of them" if res.complete else f"stopped at --max-runs {args.max_runs}"
        print(f"explored {res.runs} schedule(s) with at most {args.preemptions} preemption(s) "
              f"({done}); {len(res.failures)} failed, {len(distinct)} distinct report(s)")
    return EXIT_FOUND if distinct else EXIT_CLEAN


def _fuzz(path: Path, args: argparse.Namespace, checks: Any) -> int:
    """``--fuzz N``: the script as a campaign program (``tdpmmu fuzz``'s machinery)."""
    spec = CampaignSpec.for_script(path, args.script_args, strategy=args.strategy,
                                   depth=args.depth, steps=args.steps, seed=args.seed,
                                   runs=args.fuzz, checks=checks)
    out = Path(args.out) if args.out else default_out(spec)
    progress = Progress(args.fuzz, enabled=not args.quiet)
    try:
        outcome = run_campaign(spec, out, jobs=args.jobs or os.cpu_count() or 1,
                               resume=bool(args.resume), time_limit=args.time_limit,
                               minimise=args.minimise is not False, progress=progress)
    except CampaignError as e:
        raise UsageError(str(e)) from None
    except KeyboardInterrupt:
        print(f"tdpmmu run: interrupted; finished runs are saved in {out}/results.jsonl "
              "(--resume continues)", file=sys.stderr)
        return 130
    saved = out / "findings"
    for i, f in enumerate(outcome.findings, 1):
        saved.mkdir(exist_ok=True)
        (saved / f"{i}.json").write_text(json.dumps(f.saved(outcome.spec), indent=2) + "\n",
                                         encoding="utf-8")
    summary = write_campaign_summary(outcome.out, outcome.spec)
    if args.json:
        print_json({**outcome.to_json(), "summary": [str(p) for p in summary]})
    else:
        _print_campaign(outcome, saved)
        if summary:
            print(summary_line(summary))
    return EXIT_FOUND if outcome.findings else EXIT_CLEAN


def _print_campaign(outcome: CampaignOutcome, saved: Path) -> None:
    """The text summary of a script campaign: totals, then each distinct finding."""
    print_campaign(outcome, outcome.spec.program(), saved, "  saved: {path}")
