"""Writing a stall series: the text tables, the CSV files and the JSON document.

Kernel counterpart: none — the report a person reads after ``tdpmmu stall``.
The JSON document is DESIGN.md's ``{rows: [{memory_bytes, sptes, zap,
block_ms, worker_zap_ms, max_mmu_lock_wait_ms}]}`` with more keys beside
them: ``memslot_delete`` rows, the ``summary`` of summary.py, and the
parameters and machine of the run.
"""

from __future__ import annotations

import csv
import json
import os
import platform
from pathlib import Path
from typing import Any

DROP_COLUMNS = (
    ("memory", "memory", "s"), ("sptes", "SPTEs", ","), ("zap", "zap", "s"),
    ("block_ms", "block ms", "ms"), ("reload_ms", "reload ms", "ms"),
    ("zap_ms", "zap ms", "ms"), ("zap_cpu_ms", "zap CPU ms", "ms"),
    ("zapped_by", "zapped by", "list"), ("max_mmu_lock_hold_ms", "max hold ms", "ms"),
    ("zap_yields", "yields", ","), ("max_mmu_lock_wait_ms", "others' max wait ms", "ms"),
    ("host_invalidate_max_ms", "host unmap max ms", "ms"),
)
DELETE_COLUMNS = (
    ("memory", "memory", "s"), ("sptes", "SPTEs", ","), ("zap", "zap", "s"),
    ("delete_ms", "delete ms", "ms"), ("caller_zap_cpu_ms", "caller zap CPU ms", "ms"),
    ("off_caller_zap_cpu_ms", "off-caller zap CPU ms", "ms"),
    ("max_mmu_lock_wait_ms", "others' max wait ms", "ms"),
    ("host_invalidate_max_ms", "host unmap max ms", "ms"),
)
CSV_FILES = {"rows": "stall.csv", "memslot_delete": "memslot_delete.csv"}
JSON_FILE = "stall.json"
PLOT_FILE = "stall.png"


def _cell(value: Any, kind: str) -> str:
    if kind == "ms":
        return f"{value:,.3f}" if value < 10 else f"{value:,.1f}"
    if kind == ",":
        return f"{value:,}"
    if kind == "list":
        return " ".join(value) or "-"
    return str(value)


def format_table(rows: list[dict[str, Any]], columns: tuple = DROP_COLUMNS) -> str:
    """Rows as an aligned text table (numbers right-aligned)."""
    head = [c[1] for c in columns]
    body = [[_cell(r[key], kind) for key, _, kind in columns] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
              for i, h in enumerate(head)]
    left = {i for i, c in enumerate(columns) if c[2] in ("s", "list")}

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i in left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    out = [line(head), line(["-" * w for w in widths])]
    out += [line(b) for b in body]
    return "\n".join(out)


def build_document(series: Any, params: dict[str, Any], summary: dict[str, Any]) -> dict:
    """The JSON document of one run."""
    import numpy as np
    return {
        "rows": series.rows,
        "memslot_delete": series.memslot_delete,
        "summary": summary,
        "reports": series.reports,
        "params": params,
        "seconds": round(series.seconds, 2),
        "machine": {"python": platform.python_version(), "numpy": np.__version__,
                    "cpus": os.cpu_count(), "platform": platform.platform()},
    }


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: " ".join(map(str, v)) if isinstance(v, list) else v
                        for k, v in r.items()})


def write_files(out_dir: Path, doc: dict[str, Any]) -> list[Path]:
    """Write the CSV files and the JSON document into ``out_dir`` (created); return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for key, name in CSV_FILES.items():
        path = out_dir / name
        _write_csv(path, doc[key])
        written.append(path)
    path = out_dir / JSON_FILE
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    written.append(path)
    return written
