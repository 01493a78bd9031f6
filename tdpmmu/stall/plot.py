"""The stall plot: block time against guest memory (log-log), and the memslot-delete trade-off.

Kernel counterpart: none — the picture of the seed patch's headline.  Left:
the dropping vCPU's block time for each zap generation, with the async
worker's zap time beside it (the work did not vanish, it moved) and the
100 ms line.  Middle: the other vCPUs' worst ``mmu_lock`` wait meanwhile
(what a zap that does not yield costs everyone else).  Right: deleting the
populated memslot — its latency, and the CPU time spent zapping on threads
other than the caller (the 6.6 reason to drop the worker).  Uses
matplotlib's Agg backend: no display needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .sizes import format_size
from .summary import ASYNC_BLOCK_LIMIT_MS

_STYLE = {"sync": ("tab:red", "o"), "async": ("tab:blue", "s"), "preserve": ("tab:green", "^")}


def _series(rows: list[dict[str, Any]], zap: str, key: str) -> tuple[list[int], list[float]]:
    pts = sorted((r["memory_bytes"], r[key]) for r in rows if r["zap"] == zap and r[key] > 0)
    return [p[0] for p in pts], [p[1] for p in pts]


def _size_axis(ax: Any, sizes: list[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sizes)
    ax.set_xticklabels([format_size(s) for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("guest memory mapped with 4K SPTEs")
    ax.grid(True, which="major", alpha=0.3)


def plot_stall(doc: dict[str, Any], path: Path) -> Path:
    """Draw ``doc`` (the JSON document of output.py) into the PNG file ``path``."""
    # The object API with the Agg canvas: no pyplot global state, no display, faster import.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows, deletes = doc["rows"], doc["memslot_delete"]
    zaps = [z for z in _STYLE if any(r["zap"] == z for r in rows)]
    sizes = sorted({r["memory_bytes"] for r in rows})
    bugs = sorted({b for r in rows for b in r.get("bugs", [])})
    fig = Figure(figsize=(17, 5.2), layout="constrained")
    FigureCanvasAgg(fig)
    left, mid, right = fig.subplots(1, 3)

    for zap in zaps:
        color, marker = _STYLE[zap]
        xs, ys = _series(rows, zap, "block_ms")
        left.plot(xs, ys, color=color, marker=marker, label=f"{zap}: vCPU block time")
        if zap == "async":
            xs, ys = _series(rows, zap, "worker_zap_ms")
            left.plot(xs, ys, color=color, marker=marker, linestyle="--", alpha=0.6,
                      label="async: worker's zap time")
    left.axhline(ASYNC_BLOCK_LIMIT_MS, color="grey", linestyle=":", label="100 ms")
    _size_axis(left, sizes)
    left.set_ylabel("milliseconds")
    title = "vCPU dropping the last reference to a 4K-populated root"
    left.set_title(title + (f"\nbugs on: {', '.join(bugs)}" if bugs else ""), fontsize=10)
    left.legend(fontsize=8)

    for zap in zaps:
        color, marker = _STYLE[zap]
        xs, ys = _series(rows, zap, "max_mmu_lock_wait_ms")
        mid.plot(xs, ys, color=color, marker=marker, label=f"{zap}: others' worst wait")
    _size_axis(mid, sizes)
    mid.set_ylabel("milliseconds")
    mid.set_title("meanwhile: the other vCPUs' worst mmu_lock wait\n(faults, and the host "
                  "unmapping a page for write)", fontsize=10)
    mid.legend(fontsize=8)

    for zap in zaps:
        color, marker = _STYLE[zap]
        xs, ys = _series(deletes, zap, "delete_ms")
        right.plot(xs, ys, color=color, marker=marker, label=f"{zap}: delete latency")
        xs, ys = _series(deletes, zap, "off_caller_zap_cpu_ms")
        if xs:
            right.plot(xs, ys, color=color, marker=marker, linestyle="--", alpha=0.6,
                       label=f"{zap}: zap CPU off the caller")
    _size_axis(right, sizes)
    right.set_ylabel("milliseconds")
    right.set_title("deleting the populated memslot (zap_all_fast + zap of invalid roots)"
                    "\noff-caller zap CPU not drawn where it is zero", fontsize=10)
    right.legend(fontsize=8)

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
