"""``--trace`` and ``--timeline FILE.png`` for ``tdpmmu run``, ``replay`` and ``stall``.

A subcommand adds the options with ``add_teach_options(parser)``, checks them
before running with ``check_teach_options(args)``, asks for a traced run when
``wants_trace(args)``, and afterwards calls ``emit_teach_outputs(args, run)``
with the ``RunResult`` or the exited ``ksync.Runtime``.  ``tdpmmu stall``
measures free-mode wall time with tracing off, so its trace and timeline come
from ``stall_teach_runs``: the same drop of a populated root, small and
seeded, in controlled mode.

Kernel counterpart: none; this is the glue between the command line and
``tdpmmu.teach``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from ..cli.common import UsageError
from .record import Trace


class TeachOptionError(UsageError, ValueError):
    """A bad ``--timeline`` path: the command line prints one line and exits 2."""


def add_teach_options(p: argparse.ArgumentParser, *, trace: bool = True) -> None:
    """Add ``--timeline FILE.png`` and, unless the command has its own, ``--trace``."""
    if trace:
        p.add_argument("--trace", action="store_true",
                       help="also print the column-per-thread trace of the run")
    p.add_argument("--timeline", metavar="FILE.png",
                   help="draw a Gantt chart of the run's threads (locks held and waited "
                        "for, work items, reports) to FILE.png")


def check_teach_options(args: argparse.Namespace) -> None:
    """Refuse a ``--timeline`` path that cannot be written, before anything runs."""
    path = getattr(args, "timeline", None)
    if not path:
        return
    p = Path(path)
    if p.suffix.lower() != ".png":
        raise TeachOptionError(f"--timeline {path}: the file name must end in .png")
    if not p.parent.exists():
        raise TeachOptionError(f"--timeline {path}: directory {p.parent} does not exist")


def wants_trace(args: argparse.Namespace) -> bool:
    """Does the run need ``trace=True`` for these options?"""
    return bool(getattr(args, "trace", False) or getattr(args, "timeline", None))


def _trace_of(source: Any, title: str) -> Trace:
    if hasattr(source, "scenario"):
        return Trace.from_result(source, title=title)
    return Trace.from_runtime(source, title=title)


def emit_teach_outputs(args: argparse.Namespace, source: Any, *, title: str = "",
                       timeline: str | None = None, out: TextIO | None = None) -> None:
    """Print the trace and/or draw the timeline of one run (a RunResult or a Runtime).

    ``timeline`` overrides ``args.timeline`` (stall draws one file per
    generation); ``out`` defaults to stdout, or stderr under ``--json`` so
    stdout stays one JSON document.
    """
    if out is None:
        out = sys.stderr if getattr(args, "json", False) else sys.stdout
    trace = _trace_of(source, title)
    if getattr(args, "trace", False):
        from .trace import render_trace
        print(render_trace(trace), file=out)
    path = timeline or getattr(args, "timeline", None)
    if path:
        from .timeline import render_timeline
        print(f"timeline written to {render_timeline(trace, path)}", file=out)


def stall_timeline_path(path: str, zap: str, zaps: Sequence[str]) -> str:
    """``FILE.png`` for one generation, ``FILE-<zap>.png`` for each of several."""
    if len(zaps) == 1:
        return path
    p = Path(path)
    return str(p.with_name(f"{p.stem}-{zap}{p.suffix}"))


def stall_teach_runs(zaps: Sequence[str], bugs: Sequence[str] = (), seed: int = 0,
                     pages: int = 64) -> list[Any]:
    """One seeded controlled run per generation: a vCPU maps ``pages`` 4K pages and drops
    the last reference to its root (lab 1's program), traced."""
    from .lab_programs import run_program, unload_populated_root
    return [run_program("stall (traced, controlled)", unload_populated_root, seed=seed,
                        zap=zap, bugs=bugs, pages=pages) for zap in zaps]


def emit_stall_teach_outputs(args: argparse.Namespace, zaps: Sequence[str],
                             bugs: Sequence[str] = ()) -> None:
    """``tdpmmu stall --trace/--timeline``: trace and draw the small controlled drop per generation."""
    if not wants_trace(args):
        return
    out = sys.stderr if getattr(args, "json", False) else sys.stdout
    for res in stall_teach_runs(zaps, bugs):
        title = (f"stall, traced: zap={res.zap}, one vCPU drops a 64-page 4K root "
                 f"(controlled, seed {res.seed})")
        print(f"\n{title}", file=out)
        path = stall_timeline_path(args.timeline, res.zap, zaps) if args.timeline else None
        emit_teach_outputs(args, res, title=title, timeline=path, out=out)


__all__ = ["TeachOptionError", "add_teach_options", "check_teach_options",
           "emit_stall_teach_outputs", "emit_teach_outputs", "stall_teach_runs",
           "stall_timeline_path", "wants_trace"]
