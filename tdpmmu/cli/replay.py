"""``tdpmmu replay``: run a scenario under a recorded schedule, exactly as it ran."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import ksync

from ..harness import RunResult, run_scenario
from ..teach.cli_options import (
    add_teach_options,
    check_teach_options,
    emit_teach_outputs,
    wants_trace,
)
from . import run as run_cmd
from .common import (
    EXIT_CLEAN,
    EXIT_FOUND,
    EXIT_USAGE,
    UsageError,
    add_scenario_options,
    check_scenario_options,
    non_negative_int,
    one_line_errors,
    parse_checks,
    print_json,
    render_report,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay", help="replay a schedule string exactly",
        description="Replay one run: the scenario, zap mode, bugs, parameters and seed it "
                    "ran with, and the schedule string it printed (or a finding saved by "
                    "`tdpmmu fuzz` with --finding). The replay gives the identical reports; "
                    "a schedule that no longer fits the program is an error naming the "
                    "decision where it diverged. Exit 0 clean, 1 reports, 2 bad usage or "
                    "divergence.")
    add_scenario_options(p, scenario_required=False)
    p.add_argument("--seed", type=non_negative_int, default=0, help="the run's seed; default 0")
    p.add_argument("--schedule", metavar="STRING",
                   help="the schedule string (thread ids, dots, xN repeats); @FILE reads it "
                        "from FILE")
    p.add_argument("--finding", metavar="FILE",
                   help="a finding saved by `tdpmmu fuzz` or `tdpmmu run --fuzz` "
                        "(OUT/findings/N.json): replaces the scenario (or script) options, "
                        "seed and schedule")
    p.add_argument("--json", action="store_true",
                   help="print {reports: [{kind, title, text, ...}], schedule}")
    add_teach_options(p)
    one_line_errors(p)
    p.set_defaults(func=run)


def _read_schedule(text: str) -> str:
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as e:
            raise UsageError(f"--schedule {text}: cannot read the file ({e.strerror})") from None
    try:
        ksync.decode_schedule(text)
    except ksync.KsyncError as e:
        raise UsageError(f"--schedule: {e}") from None
    return text.strip()


def _script_argv(d: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """The ``tdpmmu run`` command line that replays a script finding (``run --fuzz``)."""
    argv = ["run", "--seed", str(int(d["seed"])), "--schedule", str(d["schedule"])]
    if d.get("checks") is not None:
        argv += ["--checks", ",".join(d["checks"]) or "none"]
    if args.trace:
        argv.append("--trace")
    if args.timeline:
        argv += ["--timeline", args.timeline]
    if args.json:
        argv.append("--json")
    return [*argv, str(d["script"]), "--", *map(str, d.get("script_args", []))]


def _replay_script(argv: list[str]) -> int:
    """Replay a script finding through ``tdpmmu run``'s own parser and runner."""
    parser = argparse.ArgumentParser(prog="tdpmmu")
    run_cmd.register(parser.add_subparsers())
    i = argv.index("--")
    ns = parser.parse_args(argv[:i])
    ns.script_args = [*ns.script_args, *argv[i + 1:]]
    return int(ns.func(ns))


def _load_finding(path: str, args: argparse.Namespace) -> list[str] | None:
    """Fill ``args`` from a scenario finding; a script finding gives its run argv."""
    try:
        d: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
        if "script" in d:
            return _script_argv(d, args)
        args.scenario, args.zap, args.bug = d["scenario"], d["zap"], list(d["bugs"])
        args.param = [f"{k}={v!r}" for k, v in d.get("params", {}).items()]
        args.checks = None if d.get("checks") is None else ",".join(d["checks"]) or "none"
        args.seed, args.schedule = int(d["seed"]), d["schedule"]
    except OSError as e:
        raise UsageError(f"--finding {path}: cannot read it ({e.strerror})") from None
    except (ValueError, KeyError, TypeError) as e:
        raise UsageError(f"--finding {path}: not a saved finding ({e})") from None
    return None


def run(args: argparse.Namespace) -> int:
    if args.finding:
        script_argv = _load_finding(args.finding, args)
        if script_argv is not None:
            return _replay_script(script_argv)
    if not args.scenario or args.schedule is None:
        raise UsageError("give --scenario and --schedule (with the run's --zap, --bug, "
                         "--param, --seed), or --finding FILE")
    params = check_scenario_options(args)
    check_teach_options(args)
    schedule = _read_schedule(args.schedule)
    try:
        r = run_scenario(args.scenario, zap=args.zap, bugs=args.bug, params=params,
                         checks=parse_checks(args.checks), seed=args.seed,
                         schedule=schedule, trace=wants_trace(args),
                         keep_runtime=wants_trace(args))
    except ksync.ReplayDivergence as e:
        print(f"tdpmmu replay: {e} (the program changed since the schedule was recorded, "
              "or it has nondeterminism the runtime does not control)", file=sys.stderr)
        return EXIT_USAGE
    if wants_trace(args):
        emit_teach_outputs(args, r, title=f"tdpmmu replay {args.scenario} (seed {args.seed})")
    print_result(r, args.json)
    return EXIT_FOUND if not r.clean else EXIT_CLEAN


def print_result(r: RunResult, as_json: bool) -> None:
    """Reports (and the crash, if any) as text or as the ``--json`` document."""
    if as_json:
        print_json(r.to_dict())
        return
    for rep in r.reports:
        print(render_report(rep))
    if r.error:
        print("error: the scenario raised\n" + r.error)
    print(f"{len(r.reports)} report(s); schedule: {r.schedule}")
