"""What the subcommands share: exit codes, usage errors, JSON output, common options."""

from __future__ import annotations

import argparse
import ast
import json
import math
import sys
from pathlib import Path
from typing import Any

EXIT_CLEAN = 0
EXIT_FOUND = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


def print_json(doc: Any) -> None:
    """One JSON document on stdout (the ``--json`` contract of DESIGN.md)."""
    json.dump(doc, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0, with a one-line error otherwise."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"{n} is negative; give a count >= 0")
    return n


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if n < 1:
        why = "is negative" if n < 0 else "is not allowed here"
        raise argparse.ArgumentTypeError(f"{n} {why}; give a count >= 1")
    return n


def positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds > 0 (``nan`` would never time out)."""
    try:
        t = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not t > 0 or math.isinf(t):
        raise argparse.ArgumentTypeError(f"{text}: give a positive, finite number of seconds")
    return t


#: Where campaigns go when no ``--out`` is given (one directory per distinct spec).
FUZZ_ROOT = Path("tdpmmu-fuzz")


def default_out(spec: Any) -> Path:
    """A campaign's default output directory: ``tdpmmu-fuzz/`` + ``spec.dir_name()``."""
    return FUZZ_ROOT / spec.dir_name()


def write_campaign_summary(out: Path, spec: Any = None) -> list[Path]:
    """Write ``summary.html`` (and ``summary.png``) beside ``out/results.jsonl``.

    The campaign's results are already safe in the results file, so a summary
    that cannot be written is one warning on stderr, not a failed command.
    """
    from ..campaign.store import StoreError
    from ..campaign.summary import write_summary
    try:
        return write_summary(out, spec)
    except (OSError, StoreError) as e:
        print(f"tdpmmu: warning: no campaign summary in {out} ({e})", file=sys.stderr)
        return []


def summary_line(paths: list[Path]) -> str:
    """The last line a campaign prints: where its summary is."""
    from ..campaign.summary import summary_line as line
    return line(paths)


def render_report(report: Any) -> str:
    """A report as the command line prints it: ``kind: title``, the full text, and one line
    saying what the kind means (``ksync.explain``; none for a kind it does not know).

    Takes a ``ksync.Report`` or its ``to_dict()`` form (as campaigns store it).
    """
    from ksync.explain import summary
    if isinstance(report, dict):
        kind, title, text = report.get("kind", ""), report.get("title", ""), report.get("text", "")
    else:
        kind, title, text = report.kind, report.title, report.text
    body = "\n".join("    " + line if line else "" for line in str(text).splitlines())
    explain = summary(kind)
    return (f"{kind}: {title}" + (f"\n{body}" if body else "")
            + (f"\n  {explain}" if explain else ""))


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """``--param name=value`` pairs; values are Python literals, else strings."""
    out: dict[str, Any] = {}
    for item in items or ():
        name, eq, text = item.partition("=")
        if not eq or not name.isidentifier():
            raise UsageError(f"--param {item!r}: write it as NAME=VALUE (e.g. vcpus=4)")
        try:
            out[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[name] = text
    return out


def parse_checks(text: str | None) -> tuple[str, ...] | None:
    """``--checks lockdep,races``; ``all`` (the default) or ``none``."""
    if text is None or text == "all":
        return None
    if text == "none":
        return ()
    names = tuple(c.strip() for c in text.split(",") if c.strip())
    from ksync import ALL_CHECKS
    unknown = [c for c in names if c not in ALL_CHECKS]
    if unknown:
        raise UsageError(f"--checks: unknown checker(s) {', '.join(unknown)}; known: "
                         f"{', '.join(ALL_CHECKS)}, or all / none")
    return names


def add_scenario_options(p: argparse.ArgumentParser, *, scenario_required: bool = True) -> None:
    """--scenario, --zap, --bug, --param, --checks: what picks the program to run."""
    p.add_argument("--scenario", required=scenario_required, metavar="NAME",
                   help="the scenario to run (see `tdpmmu scenarios`)")
    p.add_argument("--zap", default="async", metavar="MODE",
                   help="how roots are zapped: sync (pre-5.18, inline), async (the zap "
                        "worker; default) or preserve")
    p.add_argument("--bug", action="append", default=[], metavar="NAME",
                   help="switch a catalogued bug back on (repeatable; see `tdpmmu bugs`)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="override a scenario parameter (repeatable), e.g. --param vcpus=4")
    p.add_argument("--checks", default=None, metavar="LIST",
                   help="comma-separated checkers to enable (lockdep, races, uaf, refcount, "
                        "atomic_sleep, hung), or all (default) or none")


def check_scenario_options(args: argparse.Namespace) -> dict[str, Any]:
    """Validate the scenario options at once: one line and exit 2 for bad input."""
    from ..bugs import UnknownBug
    from ..harness import check_scenario_args
    from ..scenarios import UnknownScenario
    params = parse_params(args.param)
    try:
        check_scenario_args(args.scenario, args.zap, args.bug, params)
    except (UnknownScenario, UnknownBug) as e:
        raise UsageError(str(e)) from None
    return {**bug_params(args.scenario, args.bug), **params}


def bug_params(scenario: str | None, bugs: list[str]) -> dict[str, Any]:
    """Scenario parameters the given bugs need to show in ``scenario`` (``Bug.params``).

    A bug such as ``no-users-count-check`` exists only in a variant of the
    model (the seed's system work queue); ``--bug`` selects that variant
    unless ``--param`` says otherwise.
    """
    from ..bugs import BY_NAME
    out: dict[str, Any] = {}
    for name in bugs:
        bug = BY_NAME.get(name)
        if bug is not None and bug.scenario == scenario:
            out.update(dict(bug.params))
    return out


def one_line_errors(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Make ``p`` report bad arguments as one line (and exit 2), not usage plus error."""
    def error(message: str) -> None:
        p.exit(EXIT_USAGE, f"{p.prog}: {message} (see {p.prog} --help)\n")
    p.error = error  # type: ignore[method-assign]
    return p


def print_campaign(outcome: Any, program: str, findings_dir: Path, saved_line: str) -> None:
    """A campaign's totals, then each distinct finding (``fuzz`` and ``run --fuzz``).

    ``program`` heads the totals line; ``saved_line`` is formatted with
    ``path`` (the finding's saved file) as the line after its replay command.
    """
    s = outcome.spec
    print(f"{program}, strategy {s.strategy_spec()}: {outcome.runs} runs, "
          f"{outcome.clean} clean, {outcome.executions_per_second:.1f} runs/s"
          + ("" if outcome.complete else " (incomplete: --resume continues)"))
    print(f"results: {outcome.out / 'results.jsonl'}")
    for i, f in enumerate(outcome.findings, 1):
        print()
        flag = "" if f.reproducible else "  [UNCONTROLLED NONDETERMINISM]"
        print(f"finding {i}: seen in {f.count} run(s), first at seed {f.seed}{flag}")
        if not f.reproducible:
            print(f"  {f.divergence}")
        for r in f.reports:
            print(render_report(r))
        if f.minimised:
            m = f.minimised
            print(f"schedule shrunk from {m['original_decisions']} to {m['decisions']} "
                  f"decisions, {m['original_preemptions']} to {m['preemptions']} preemptions")
        print(f"replay: {f.replay_command}")
        print(saved_line.format(path=findings_dir / f"{i}.json"))
