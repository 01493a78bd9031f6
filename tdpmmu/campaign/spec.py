"""What a campaign runs: the scenario, its knobs, the strategy and the seeds."""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class CampaignSpec:
    """One campaign.  Run ``i`` uses seed ``seed + i``; ``steps`` is PCT's k.

    ``steps`` left ``None`` for PCT is measured by one run before the campaign
    starts (and stored, so a resumed campaign uses the same k).
    """

    scenario: str
    zap: str = "async"
    bugs: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    strategy: str = "random"
    depth: int = 3
    steps: int | None = None
    seed: int = 0
    runs: int = 100
    checks: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        self.bugs = tuple(sorted(set(self.bugs)))
        if self.checks is not None:
            self.checks = tuple(self.checks)

    def strategy_spec(self) -> str:
        """The string ``ksync.Runtime(strategy=...)`` takes for this campaign."""
        if self.strategy == "pct":
            return f"pct:d={self.depth}" + (f",k={self.steps}" if self.steps else "")
        return self.strategy

    def identity(self) -> dict[str, Any]:
        """What must match for ``--resume`` to continue a campaign (not ``runs``)."""
        d = asdict(self)
        d.pop("runs")
        d["bugs"] = list(self.bugs)
        d["checks"] = None if self.checks is None else list(self.checks)
        return d

    def to_dict(self) -> dict[str, Any]:
        return {**self.identity(), "runs": self.runs}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CampaignSpec:
        d = dict(d)
        d["bugs"] = tuple(d.get("bugs") or ())
        if d.get("checks") is not None:
            d["checks"] = tuple(d["checks"])
        return cls(**d)

    def replay_args(self, seed: int, schedule: str) -> list[str]:
        """The ``tdpmmu replay`` argument list that reproduces run ``seed``."""
        out = ["tdpmmu", "replay", "--scenario", self.scenario, "--zap", self.zap]
        for b in self.bugs:
            out += ["--bug", b]
        for k, v in sorted(self.params.items()):
            out += ["--param", f"{k}={_param_text(v)}"]
        if self.checks is not None:
            out += ["--checks", ",".join(self.checks) or "none"]
        out += ["--seed", str(seed), "--schedule", schedule]
        return out

    def replay_command(self, seed: int, schedule: str) -> str:
        return shlex.join(self.replay_args(seed, schedule))


def _param_text(v: object) -> str:
    """``--param`` text that parses back to ``v``: a bare word when it is one, else a literal."""
    if isinstance(v, str) and v.isidentifier() and v not in ("True", "False", "None"):
        return v        # parse_params keeps a word that is not a literal as a string
    return repr(v) if isinstance(v, str) else str(v)
