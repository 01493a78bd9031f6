"""The results file: JSON lines appended as results arrive, readable after a kill.

Line 1 is ``{"type": "campaign", "spec": {...}}``; then one ``run`` record
per finished seed and one ``minimised`` record per shrunk finding.  Each line
is written with a single ``write`` and flushed, so killing the campaign loses
only runs still in flight; a torn last line (killed mid-write) is skipped on
reading.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .spec import CampaignSpec


class StoreError(Exception):
    """The results file cannot be used (exists without --resume, other campaign, unreadable)."""


class ResultStore:
    """Append-only JSON-lines results of one campaign, under ``out/results.jsonl``."""

    def __init__(self, out: Path) -> None:
        self.path = Path(out) / "results.jsonl"
        self.records: list[dict[str, Any]] = []
        self._f: Any = None

    def open(self, spec: CampaignSpec, resume: bool) -> CampaignSpec:
        """Start (or, with ``resume``, continue) the file; returns the spec in force."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size:
            if not resume:
                raise StoreError(f"{self.path} already holds a campaign; pass --resume to "
                                 "continue it or --out for a new directory")
            spec = self._load(spec)
            self._f = open(self.path, "a", encoding="utf-8")
            # A torn last line is dead weight; start ours on a fresh line.
            if self.path.read_bytes()[-1:] != b"\n":
                self._f.write("\n")
        else:
            self._f = open(self.path, "w", encoding="utf-8")
            self.append({"type": "campaign", "spec": spec.to_dict()}, keep=False)
        return spec

    def _load(self, spec: CampaignSpec) -> CampaignSpec:
        lines = self.path.read_text(encoding="utf-8").splitlines()
        try:
            head = json.loads(lines[0])
            stored = CampaignSpec.from_dict(head["spec"])
        except (ValueError, KeyError, TypeError, IndexError) as e:
            raise StoreError(f"{self.path}: not a campaign results file ({e})") from None
        mine, theirs = spec.identity(), stored.identity()
        if spec.steps is None:
            mine["steps"] = theirs["steps"]
        diff = sorted(k for k in mine if mine[k] != theirs[k])
        if diff:
            raise StoreError(f"{self.path} holds another campaign (differs in "
                             f"{', '.join(diff)}); resume with the same options")
        for line in lines[1:]:
            try:
                self.records.append(json.loads(line))
            except ValueError:
                continue        # torn by a kill mid-write: that run is simply redone
        stored.runs = spec.runs
        return stored

    def append(self, record: dict[str, Any], keep: bool = True) -> None:
        self._f.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._f.flush()
        if keep:
            self.records.append(record)

    def done_seeds(self) -> set[int]:
        return {r["seed"] for r in self.records if r.get("type") == "run"}

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
