"""``tdpmmu stall``: block time of a vCPU dropping a big 4K-populated root, sync vs async vs preserve.

Kernel counterpart: the measurement behind "KVM: x86/mmu: Zap defunct roots
via asynchronous worker" (5.18) and its 6.6 reversal; see tdpmmu.stall.
Prints the tables (a progress bar on stderr meanwhile), writes CSV, JSON and
a PNG plot into ``--out``; ``--json`` prints the JSON document instead.
Exit status: 0 clean, 1 the model filed a report or failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..bugs import CATALOGUE, UnknownBug, check_bug_names
from ..kvm import ZAP_MODES
from ..stall import SizeError, StallError, check_fits, parse_sizes, run_series, summarise
from ..stall.output import (
    DELETE_COLUMNS,
    DROP_COLUMNS,
    PLOT_FILE,
    build_document,
    format_table,
    write_files,
)
from ..stall.progress import Progress
from ..stall.summary import describe
from .common import EXIT_CLEAN, EXIT_FOUND, UsageError, positive_int, print_json

DEFAULT_MEMORY = "1G,4G,64G"
DEFAULT_ZAP = ",".join(ZAP_MODES)
DEFAULT_OUT = "out/stall"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stall", help="block time of a vCPU dropping a big 4K-populated root",
        description="For each guest size and zap generation: a vCPU drops the last reference "
                    "to a root populated with 4K SPTEs while other vCPUs fault (its block "
                    "time, the zap's time and mmu_lock holds, the others' worst mmu_lock "
                    "wait), then the populated memslot is deleted (latency, and zap CPU time "
                    "off the caller). Free mode, checkers off.")
    p.add_argument("--memory", default=DEFAULT_MEMORY, metavar="SIZES",
                   help=f"comma-separated guest sizes, e.g. 1G,4G,1T (default {DEFAULT_MEMORY})")
    p.add_argument("--zap", default=DEFAULT_ZAP, metavar="MODES",
                   help=f"comma-separated zap generations (default {DEFAULT_ZAP})")
    p.add_argument("--bug", action="append", default=[], metavar="NAME",
                   help="switch a catalogued bug on, e.g. zap-without-yield (repeatable; "
                        f"one of {', '.join(b.name for b in CATALOGUE)})")
    p.add_argument("--repeat", type=positive_int, default=1, metavar="N",
                   help="samples per size and generation; rows are medians (default 1)")
    p.add_argument("--vcpus", type=positive_int, default=2, metavar="N",
                   help="other vCPUs faulting meanwhile (default 2)")
    p.add_argument("--fault-interval-us", type=float, default=500.0, metavar="US",
                   help="pause of each faulting vCPU between faults (default 500)")
    p.add_argument("--host-invalidate-ms", type=float, default=10.0, metavar="MS",
                   help="the host unmaps one guest page every MS ms, taking mmu_lock for write "
                        "(default 10; 0 never)")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help=f"directory for stall.csv, memslot_delete.csv, stall.json and stall.png "
                        f"(default {DEFAULT_OUT})")
    p.add_argument("--json", action="store_true",
                   help="print the JSON document {rows: [{memory_bytes, sptes, zap, block_ms, "
                        "worker_zap_ms, max_mmu_lock_wait_ms, ...}], memslot_delete, summary}")
    p.add_argument("--no-plot", action="store_true", help="do not draw stall.png")
    # --trace/--timeline: a small seeded controlled drop per generation (tdpmmu.teach),
    # since the measured free-mode runs keep tracing off.
    from ..teach.cli_options import add_teach_options
    add_teach_options(p)
    p.set_defaults(func=run)


def _parse_zaps(text: str) -> list[str]:
    zaps: list[str] = []
    for z in (p.strip() for p in text.split(",")):
        if z not in ZAP_MODES:
            raise UsageError(f"--zap: {z!r} is not a zap generation; choose from "
                             f"{', '.join(ZAP_MODES)}")
        if z not in zaps:
            zaps.append(z)
    return zaps


def _parse_bugs(values: list[str]) -> list[str]:
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    try:
        return sorted(check_bug_names(names))
    except UnknownBug as e:
        raise UsageError(f"--bug: {e}") from None


def _prepare_out(text: str) -> Path:
    out = Path(text)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out {text}: cannot create the directory ({e.strerror})") from None
    if not out.is_dir():
        raise UsageError(f"--out {text}: not a directory")
    return out


def run(args: argparse.Namespace) -> int:
    try:
        sizes = parse_sizes(args.memory)
        check_fits(sizes)
    except SizeError as e:
        raise UsageError(f"--memory: {e}") from None
    zaps = _parse_zaps(args.zap)
    bugs = _parse_bugs(args.bug)
    if not 0 <= args.fault_interval_us <= 1e6:
        raise UsageError(f"--fault-interval-us: {args.fault_interval_us} is not between 0 and "
                         "1000000")
    if not 0 <= args.host_invalidate_ms <= 1e6:
        raise UsageError(f"--host-invalidate-ms: {args.host_invalidate_ms} is not between 0 and "
                         "1000000")
    out = _prepare_out(args.out)
    from ..teach.cli_options import check_teach_options, emit_stall_teach_outputs
    check_teach_options(args)
    progress = Progress(sys.stderr)
    try:
        series = run_series(sizes, zaps, bugs, repeat=args.repeat, faulters=args.vcpus,
                            fault_interval_us=args.fault_interval_us,
                            invalidate_interval_ms=args.host_invalidate_ms, progress=progress)
    except StallError as e:
        progress.close()
        print(f"tdpmmu stall: {e}", file=sys.stderr)
        return EXIT_FOUND
    progress.close()
    params = {"memory": [int(s) for s in sizes], "zap": zaps, "bugs": bugs,
              "repeat": args.repeat, "vcpus": args.vcpus,
              "fault_interval_us": args.fault_interval_us,
              "host_invalidate_ms": args.host_invalidate_ms, "mode": "free", "checks": []}
    summary = summarise(series.rows)
    doc = build_document(series, params, summary)
    files = write_files(out, doc)
    if not args.no_plot:
        from ..stall.plot import plot_stall
        files.append(plot_stall(doc, out / PLOT_FILE))
    if args.json:
        print_json(doc)
    else:
        _print_text(doc, files)
    emit_stall_teach_outputs(args, zaps, bugs)
    for r in series.reports:
        print(f"tdpmmu stall: report: {r}", file=sys.stderr)
    return EXIT_FOUND if series.reports else EXIT_CLEAN


def _print_text(doc: dict, files: list[Path]) -> None:
    bugs = doc["params"]["bugs"]
    every = doc["params"]["host_invalidate_ms"]
    print("vCPU dropping the last reference to a 4K-populated root while "
          f"{doc['params']['vcpus']} other vCPU(s) fault"
          + (f" and the host unmaps a page every {every:g} ms" if every else "")
          + (f" (bugs on: {', '.join(bugs)})" if bugs else ""))
    print(format_table(doc["rows"], DROP_COLUMNS))
    print()
    print("deleting the populated memslot (zap_all_fast + zap of the invalidated roots)")
    print(format_table(doc["memslot_delete"], DELETE_COLUMNS))
    print()
    for line in describe(doc["summary"]):
        print(line)
    print(f"{doc['seconds']:.1f} s; wrote {', '.join(str(f) for f in files)}")
