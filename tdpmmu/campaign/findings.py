"""Distinct findings of a campaign, from its stored records.

Runs whose first report has the same kind and title are one finding; the
lowest seed stands for it (so the summary does not depend on which worker
finished first).  Runs that did not replay are kept apart, flagged as
uncontrolled nondeterminism.  A finding's schedule is its shrunk one when a
``minimised`` record exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .spec import CampaignSpec


@dataclass
class Finding:
    """One distinct finding: its first report, where it was seen, how to replay it."""

    kind: str
    title: str
    seed: int
    schedule: str
    steps: int
    reproducible: bool
    divergence: str
    reports: list[dict[str, Any]]
    count: int = 1
    seeds: list[int] = field(default_factory=list)
    minimised: dict[str, Any] | None = None
    replay_command: str = ""

    def to_json(self) -> dict[str, Any]:
        out = {"kind": self.kind, "title": self.title, "seed": self.seed,
               "schedule": self.schedule, "replay_command": self.replay_command,
               "count": self.count, "reproducible": self.reproducible,
               "reports": self.reports}
        if not self.reproducible:
            out["divergence"] = self.divergence
        if self.minimised is not None:
            out["minimised"] = {k: self.minimised[k] for k in (
                "decisions", "preemptions", "original_decisions", "original_preemptions")}
        return out

    def saved(self, spec: CampaignSpec) -> dict[str, Any]:
        """What ``tdpmmu replay --finding FILE`` reads back (a script's: what
        ``replay_command`` runs, for people and tools)."""
        if spec.script:
            return {"script": spec.script, "script_args": list(spec.script_args),
                    "checks": None if spec.checks is None else list(spec.checks),
                    "seed": self.seed, "schedule": self.schedule, "kind": self.kind,
                    "title": self.title, "replay_command": self.replay_command}
        return {"scenario": spec.scenario, "zap": spec.zap, "bugs": list(spec.bugs),
                "params": spec.params, "checks": None if spec.checks is None
                else list(spec.checks), "seed": self.seed, "schedule": self.schedule,
                "kind": self.kind, "title": self.title}


def group_findings(spec: CampaignSpec, records: list[dict[str, Any]]) -> list[Finding]:
    """The distinct findings among ``records``, reproducible ones first, by lowest seed."""
    shrunk = {r["seed"]: r for r in records if r.get("type") == "minimised"}
    groups: dict[tuple[bool, str, str], Finding] = {}
    for r in sorted((r for r in records if r.get("type") == "run" and not r["clean"]),
                    key=lambda r: r["seed"]):
        first = r["reports"][0]
        key = (r["reproducible"], first["kind"], first["title"])
        f = groups.get(key)
        if f is not None:
            f.count += 1
            f.seeds.append(r["seed"])
            continue
        groups[key] = Finding(kind=first["kind"], title=first["title"], seed=r["seed"],
                              schedule=r.get("schedule", ""), steps=r.get("steps", 0),
                              reproducible=r["reproducible"],
                              divergence=r.get("divergence") or "", reports=r["reports"],
                              seeds=[r["seed"]])
    out = sorted(groups.values(), key=lambda f: (not f.reproducible, f.seed))
    for f in out:
        m = shrunk.get(f.seed)
        if m is not None and f.reproducible:
            f.minimised = m
            f.schedule = m["schedule"]
        f.replay_command = spec.replay_command(f.seed, f.schedule)
    return out
