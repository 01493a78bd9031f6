"""The results file: JSON lines appended as results arrive, readable after a kill.

Line 1 is ``{"type": "campaign", "spec": {...}}``; then one ``run`` record
per finished seed and one ``minimised`` record per shrunk finding.  Each line
is written with a single ``write`` and flushed, so killing the campaign loses
only runs still in flight; a torn last line (killed mid-write) is skipped on
reading.  A ``run`` record is stamped with ``at``, the wall-clock time it
arrived, so the campaign summary can draw executions per second over time.
"""

from __future__ import annotations

import json
import time
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
        """Start (or, with ``resume``, continue) the file; returns the spec in force.

        A file holding another campaign is refused, resume or not, with the
        options that differ; the same campaign is continued only with ``resume``.
        """
        _make_dir(self.path.parent)
        try:
            if self.path.exists() and self.path.stat().st_size:
                spec = self._load(spec, resume)
                self._f = open(self.path, "a", encoding="utf-8")
                # A torn last line is dead weight; start ours on a fresh line.
                if self.path.read_bytes()[-1:] != b"\n":
                    self._f.write("\n")
            else:
                self._f = open(self.path, "w", encoding="utf-8")
                self.append({"type": "campaign", "spec": spec.to_dict()}, keep=False)
        except OSError as e:
            raise StoreError(f"{self.path}: cannot be written ({e.strerror})") from None
        return spec

    def _load(self, spec: CampaignSpec, resume: bool) -> CampaignSpec:
        stored, records = read_results(self.path)
        diff = spec.differences(stored)
        if diff:
            raise StoreError(f"{self.path.parent} holds another campaign ({'; '.join(diff)}); "
                             "give another --out, or leave --out out: the default directory "
                             "is named by the options")
        if not resume:
            done = sum(1 for r in records if r.get("type") == "run")
            left = spec.runs - done
            more = f"; --resume runs the other {left}" if left > 0 else ""
            raise StoreError(f"{self.path.parent} already holds this campaign ({done} runs "
                             f"done{more}); pass --resume to continue it or --out for a new "
                             "directory")
        self.records = records
        stored.runs = spec.runs
        return stored

    def append(self, record: dict[str, Any], keep: bool = True) -> None:
        """Write ``record`` as one line and flush it; ``run`` records get their ``at``."""
        if record.get("type") == "run" and "at" not in record:
            record = {**record, "at": round(time.time(), 3)}
        self._f.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._f.flush()
        if keep:
            self.records.append(record)

    def done_seeds(self) -> set[int]:
        """Seeds with a ``run`` record: a resumed campaign skips them."""
        return {r["seed"] for r in self.records if r.get("type") == "run"}

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def read_results(path: Path) -> tuple[CampaignSpec, list[dict[str, Any]]]:
    """The spec and the records (header excluded) of the results file ``path``.

    Raises ``StoreError`` when line 1 is not a campaign header; a torn line
    further down (a kill mid-write) is skipped: that run is simply redone.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise StoreError(f"{path}: cannot be read ({e.strerror})") from None
    try:
        head = json.loads(lines[0])
        stored = CampaignSpec.from_dict(head["spec"])
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise StoreError(f"{path}: not a campaign results file ({e})") from None
    records = []
    for line in lines[1:]:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return stored, records


def _make_dir(path: Path) -> None:
    """Create the output directory, or say in one line why it cannot be."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise StoreError(f"--out {path}: exists and is not a directory") from None
    except OSError as e:
        raise StoreError(f"--out {path}: cannot be created ({e.strerror})") from None
