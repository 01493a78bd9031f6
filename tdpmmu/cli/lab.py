"""``tdpmmu lab [N]``: run lab N of docs/labs/ with a seed and print what its handbook says."""

from __future__ import annotations

import argparse

from ..teach import labs as labmod
from ..teach.record import Trace
from .common import EXIT_CLEAN, UsageError, non_negative_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lab", help="run a lab of the concurrency course",
                       description="Run lab N (docs/labs/) under a seed and print its "
                                   "results and questions; --answers adds the answer key. "
                                   "Without N, list the labs. Exit status 0 when the lab "
                                   "ran (the reports it shows are its subject).")
    p.add_argument("number", nargs="?", type=int, metavar="N", help="lab number")
    p.add_argument("--seed", type=non_negative_int, default=labmod.DEFAULT_SEED,
                   help=f"the seed of the controlled runs (default {labmod.DEFAULT_SEED})")
    p.add_argument("--answers", action="store_true", help="also print the answer key")
    p.add_argument("--trace", action="store_true",
                   help="also print the full column-per-thread trace of the lab's main run")
    p.add_argument("--timeline", metavar="FILE.png",
                   help="draw the Gantt chart of the lab's main run to FILE.png")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.number is None:
        for n, lab in labmod.LABS.items():
            print(f"{n}  {lab.title}  (docs/labs/{lab.handbook})")
        return EXIT_CLEAN
    try:
        lab = labmod.get_lab(args.number)
        questions = lab.section("Questions")
        answers = lab.section("Answer key") if args.answers else ""
    except labmod.LabError as e:
        raise UsageError(str(e)) from None
    if args.timeline and not args.timeline.lower().endswith(".png"):
        raise UsageError(f"--timeline {args.timeline}: the file name must end in .png")
    result = lab.run(args.seed)
    print(result.text)
    print("\n## Questions\n")
    print(questions)
    if answers:
        print("\n## Answer key\n")
        print(answers)
    if args.trace or args.timeline:
        trace = Trace.from_result(result.traced, title=result.caption)
        if args.trace:
            from ..teach.trace import render_trace
            print(f"\n## Trace ({result.caption})\n")
            print(render_trace(trace))
        if args.timeline:
            from ..teach.timeline import render_timeline
            try:
                path = render_timeline(trace, args.timeline, window=result.window)
            except ValueError as e:
                raise UsageError(str(e)) from None
            print(f"\ntimeline of {result.caption} written to {path}")
    return EXIT_CLEAN
