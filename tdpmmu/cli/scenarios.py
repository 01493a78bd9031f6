"""``tdpmmu scenarios``: the selftest-style programs that run, fuzz and replay drive."""

from __future__ import annotations

import argparse

from ..scenarios import SCENARIOS
from .common import EXIT_CLEAN, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scenarios", help="list the scenarios",
                       description="List the scenarios (small programs over the model, "
                                   "modelled on KVM's selftests).")
    p.add_argument("--json", action="store_true", help="print a JSON list of {name, summary}")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.json:
        print_json([{"name": s.name, "summary": s.summary} for s in SCENARIOS.values()])
        return EXIT_CLEAN
    width = max((len(n) for n in SCENARIOS), default=0)
    for s in SCENARIOS.values():
        params = ", ".join(f"{k}={v}" for k, v in s.params.items())
        print(f"{s.name:<{width}}  {s.summary}")
        if params:
            print(f"{'':<{width}}  defaults: {params}")
    return EXIT_CLEAN
