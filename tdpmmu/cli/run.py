"""``tdpmmu run SCRIPT.py``: a plain script, run with a runtime already entered.

The script's top level runs on the main thread of a ``ksync.Runtime`` built
from the options, so it just uses the primitives (``ksync.SpinLock``,
``ksync.current_runtime().spawn``, ``tdpmmu.Kvm``...).  When it ends, every
thread it started is joined and the checkers' reports are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import runpy
import sys
import traceback
from pathlib import Path
from typing import Any

import ksync

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
    non_negative_int,
    one_line_errors,
    parse_checks,
    positive_int,
    print_json,
    render_report,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="run a plain script under a runtime and print the reports",
        description="Execute SCRIPT.py with a ksync runtime already entered on its main "
                    "thread, then print what the checkers reported and the schedule string "
                    "that replays the run (controlled mode). Exit 0 clean, 1 reports (or the "
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
                   help="print {reports: [{kind, title, text, ...}], schedule}")
    add_teach_options(p)
    one_line_errors(p)
    p.set_defaults(func=run)


def _execute(path: Path, argv: list[str], **rt_kw: Any) -> tuple[ksync.Runtime, str]:
    """Run the script once under a fresh runtime; returns it and the script's crash text."""
    rt = ksync.Runtime(**rt_kw)
    error = ""
    old_argv, old_path = sys.argv, list(sys.path)
    sys.argv = [str(path), *argv]
    sys.path.insert(0, str(path.parent))
    try:
        with rt:
            runpy.run_path(str(path), run_name="__main__")
    except ksync.ReplayDivergence:
        raise
    except SystemExit as e:
        if e.code not in (None, 0):
            error = f"the script exited with status {e.code}"
    except Exception as e:  # noqa: BLE001 - the user's script failed: show its traceback
        error = "".join(traceback.format_exception(e)).rstrip()
    finally:
        sys.argv, sys.path[:] = old_argv, old_path
    return rt, error


def run(args: argparse.Namespace) -> int:
    path = Path(args.script)
    if not path.is_file():
        raise UsageError(f"{args.script}: no such script")
    try:
        compile(path.read_bytes(), str(path), "exec")
    except (SyntaxError, ValueError) as e:
        raise UsageError(f"{args.script}: cannot be compiled ({e})") from None
    checks = parse_checks(args.checks)
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
                first, _ = _execute(path, args.script_args, strategy="random", **kw)
            k = max(1, len(first.decisions))
        strategy = f"pct:d={args.depth},k={k}"
    # With --json, stdout carries one JSON document: the script's prints go to stderr.
    out = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    try:
        with out:
            rt, error = _execute(path, args.script_args, strategy=strategy, schedule=schedule,
                                 trace=wants_trace(args), **kw)
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
