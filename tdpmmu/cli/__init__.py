"""The ``tdpmmu`` command line (also ``python -m tdpmmu``).

One module per subcommand; each exposes ``register(subparsers)``, which adds
its parser and sets ``func`` to a ``run(args) -> int``.  Exit status:
0 clean, 1 a checker reported (or a finding), 2 bad usage.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ksync import KsyncError, affinity

from .common import EXIT_CLEAN, EXIT_USAGE, UsageError

#: Subcommand modules, in the order ``--help`` lists them.
SUBCOMMANDS = ("stall", "fuzz", "replay", "run", "bugs", "scenarios", "explain", "lab")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tdpmmu",
        description="A threaded model of x86 KVM's TDP MMU roots, with kernel-style "
                    "checkers. Exit status: 0 clean, 1 a checker reported, 2 bad usage.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            mod = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            continue        # a subcommand not built yet is simply not offered
        mod.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tdpmmu`` console script."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # All after `--` is the script's (run): split it off first, since argparse
    # refuses `SCRIPT.py --seed 3 -- ARGS` (options between two positionals).
    rest: list[str] | None = None
    if "--" in argv:
        i = argv.index("--")
        argv, rest = argv[:i], argv[i + 1:]
    args = parser.parse_args(argv)
    if rest is not None:
        if not hasattr(args, "script_args"):
            parser.error(f"`--` passes arguments to a script; {args.command or 'tdpmmu'} "
                         "takes none")
        args.script_args = [*args.script_args, *rest]
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        # A bad KSYNC_PIN is bad usage: said once here, not as a traceback per run.
        affinity.choose_cpu(None)
    except KsyncError as e:
        print(f"tdpmmu {args.command}: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except UsageError as e:
        print(f"tdpmmu {args.command}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # `tdpmmu bugs | head`: the reader left; say nothing more.
        sys.stderr.close()
        return EXIT_CLEAN
