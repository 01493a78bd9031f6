"""Helpers shared by the campaign tests."""

from __future__ import annotations

import json
from pathlib import Path


def records(out: Path) -> list[dict]:
    """The records of ``out/results.jsonl``, skipping a torn last line (a killed writer)."""
    recs = []
    for line in (out / "results.jsonl").read_text().splitlines():
        try:
            recs.append(json.loads(line))
        except ValueError:
            pass
    return recs
