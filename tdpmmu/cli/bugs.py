"""``tdpmmu bugs``: the catalogue of historical bugs that can be switched back on."""

from __future__ import annotations

import argparse
import textwrap

from ..bugs import CATALOGUE
from .common import EXIT_CLEAN, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bugs", help="list the bug catalogue",
                       description="List the historical bugs and design hazards that "
                                   "Kvm(bugs={...}) and --bug switch back on.")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list of {name, summary, kernel_ref, expected_kind, "
                        "scenario}")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.json:
        print_json([{"name": b.name, "summary": b.summary, "kernel_ref": b.kernel_ref,
                     "expected_kind": b.expected_kind, "scenario": b.scenario}
                    for b in CATALOGUE])
        return EXIT_CLEAN
    for b in CATALOGUE:
        print(f"{b.name}  [{b.expected_kind}, scenario {b.scenario}]")
        print(textwrap.indent(textwrap.fill(b.summary, 76), "    "))
        print(textwrap.indent(textwrap.fill(b.interleaving, 76), "    "))
        print(textwrap.indent(textwrap.fill("ref: " + b.kernel_ref, 76), "    "))
        print()
    return EXIT_CLEAN
