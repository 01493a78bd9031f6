"""``tdpmmu explain [KIND]``: what a report kind means and where the kernel checks the same."""

from __future__ import annotations

import argparse

from ksync.explain import EXPLANATIONS, UnknownKind, explain
from ksync.report import KINDS

from ..bugs import CATALOGUE
from .common import EXIT_CLEAN, UsageError, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="explain a report kind",
                       description="Explain a report kind: what it means, where the kernel "
                                   "has the same check, how it is fixed, and which catalogue "
                                   "bugs show it. Without KIND, list every kind.")
    p.add_argument("kind", nargs="?", metavar="KIND", help="a report kind, e.g. data-race")
    p.add_argument("--json", action="store_true",
                   help="print {kind, summary, meaning, kernel, fix, bugs} (a list without KIND)")
    p.set_defaults(func=run)


def _bugs_of(kind: str) -> list[str]:
    return [b.name for b in CATALOGUE if b.expected_kind == kind]


def _doc(kind: str) -> dict[str, object]:
    e = EXPLANATIONS[kind]
    return {"kind": e.kind, "summary": e.summary, "meaning": e.meaning, "kernel": e.kernel,
            "fix": e.fix, "bugs": _bugs_of(kind)}


def run(args: argparse.Namespace) -> int:
    if args.kind is None:
        if args.json:
            print_json([_doc(k) for k in KINDS])
            return EXIT_CLEAN
        width = max(len(k) for k in KINDS)
        for k in KINDS:
            print(f"{k:<{width}}  {EXPLANATIONS[k].summary}")
        return EXIT_CLEAN
    try:
        text = explain(args.kind)
    except UnknownKind as e:
        raise UsageError(str(e)) from None
    if args.json:
        print_json(_doc(args.kind))
        return EXIT_CLEAN
    print(text, end="")
    bugs = _bugs_of(args.kind)
    if bugs:
        print(f"\nCatalogue bugs that show as {args.kind} (tdpmmu bugs):")
        for b in bugs:
            print(f"  {b}")
    return EXIT_CLEAN
