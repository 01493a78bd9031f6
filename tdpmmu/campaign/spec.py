"""What a campaign runs: the scenario (or a user's script), its knobs, the strategy and the seeds.

A spec also names itself: ``dir_name()`` is the default output directory
(readable options plus a hash of the whole identity, so two campaigns that
differ in anything never share a directory), and ``differences(other)`` says
in command-line terms what sets two specs apart when they do collide.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: The command-line option that sets each identity field (for error messages).
OPTION_OF = {"scenario": "--scenario", "zap": "--zap", "bugs": "--bug", "params": "--param",
             "strategy": "--strategy", "depth": "--depth", "steps": "--steps",
             "seed": "--seed", "checks": "--checks", "script": "SCRIPT",
             "script_args": "the script's arguments"}


@dataclass
class CampaignSpec:
    """One campaign.  Run ``i`` uses seed ``seed + i``; ``steps`` is PCT's k.

    ``steps`` left ``None`` for PCT is measured by one run before the campaign
    starts (and stored, so a resumed campaign uses the same k).  A non-empty
    ``script`` (an absolute path) makes it a campaign over a user's script run
    as ``tdpmmu run`` runs it; ``scenario``, ``zap``, ``bugs`` and ``params``
    are then unused.
    """

    scenario: str
    zap: str = "async"
    bugs: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    strategy: str = "portfolio"
    depth: int = 3
    steps: int | None = None
    seed: int = 0
    runs: int = 100
    checks: tuple[str, ...] | None = None
    script: str = ""
    script_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.bugs = tuple(sorted(set(self.bugs)))
        if self.checks is not None:
            self.checks = tuple(self.checks)
        self.script_args = tuple(self.script_args)

    @classmethod
    def for_script(cls, script: str | Path, args: tuple[str, ...] | list[str] = (),
                   **kw: Any) -> CampaignSpec:
        """A campaign over ``script`` (resolved, so workers and replays find it from anywhere)."""
        return cls(scenario="", script=str(Path(script).resolve()), script_args=tuple(args),
                   **kw)

    def program(self) -> str:
        """What runs, for people: ``script NAME.py`` or the scenario's name."""
        return f"script {Path(self.script).name}" if self.script else self.scenario

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
        d["script_args"] = list(self.script_args)
        if not self.script:
            # A scenario campaign's identity (and so its hash) is what it was before
            # scripts could be run: results files written then still resume.
            d.pop("script")
            d.pop("script_args")
        return d

    def identity_hash(self) -> str:
        """Eight hex digits that change with any field of the identity, stable across runs."""
        text = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"),
                          default=_stable_text)
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def dir_name(self) -> str:
        """The default output directory's name: the options that matter most, then the hash.

        ``runs`` is not in it: seeds ``seed .. seed+runs-1`` of a longer campaign
        extend a shorter one, so ``--runs`` more is ``--resume`` of the same
        directory.  Everything else (zap, bugs, params, strategy, depth, steps,
        checks, seed, the script) changes the hash; the readable part is for people.
        """
        if self.script:
            parts = ["script", Path(self.script).stem]
        else:
            parts = [self.scenario, self.zap]
            if self.bugs:
                parts.append("bug=" + "+".join(self.bugs))
            parts += [f"{k}={_slug_text(v)}" for k, v in sorted(self.params.items())]
        parts.append(self.strategy)
        if self.strategy == "pct":
            parts.append(f"d{self.depth}" + (f"k{self.steps}" if self.steps else ""))
        if self.checks is not None:
            parts.append("checks=" + ("+".join(self.checks) or "none"))
        parts.append(f"s{self.seed}")
        slug = re.sub(r"[^A-Za-z0-9_.=+-]+", "_", "-".join(parts))[:96].strip("-_.")
        return f"{slug}-{self.identity_hash()}"

    def differences(self, other: CampaignSpec) -> list[str]:
        """What sets ``self`` apart from ``other`` (a stored campaign), as option phrases.

        Each item reads ``--zap is sync here, async there``.  ``steps`` left to be
        measured (``None`` here) matches whatever ``other`` measured.
        """
        mine, theirs = self.identity(), other.identity()
        if self.steps is None:
            mine["steps"] = theirs.get("steps")
        out = []
        for key in sorted(set(mine) | set(theirs)):
            a, b = mine.get(key), theirs.get(key)
            if a != b:
                opt = OPTION_OF.get(key, "--" + key.replace("_", "-"))
                out.append(f"{opt} is {_option_text(key, a)} here, "
                           f"{_option_text(key, b)} there")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {**self.identity(), "runs": self.runs}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CampaignSpec:
        d = dict(d)
        d["bugs"] = tuple(d.get("bugs") or ())
        if d.get("checks") is not None:
            d["checks"] = tuple(d["checks"])
        d["script_args"] = tuple(d.get("script_args") or ())
        return cls(**d)

    def replay_args(self, seed: int, schedule: str) -> list[str]:
        """The ``tdpmmu replay`` (a script: ``tdpmmu run``) argument list that reproduces
        run ``seed``."""
        if self.script:
            # Options before the script: everything after SCRIPT (and after `--`, which
            # lets an argument start with a dash) is the script's own argv.
            out = ["tdpmmu", "run", "--seed", str(seed), "--schedule", schedule]
            if self.checks is not None:
                out += ["--checks", ",".join(self.checks) or "none"]
            return out + [self.script] + (["--", *self.script_args] if self.script_args else [])
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
        """``replay_args`` as one line to copy into a shell."""
        return shlex.join(self.replay_args(seed, schedule))


def _stable_text(value: Any) -> Any:
    """JSON for what JSON lacks (a set given as ``--param``), the same in every process."""
    if isinstance(value, (set, frozenset)):
        return sorted(map(repr, value))     # a set's own order depends on PYTHONHASHSEED
    return repr(value)


def _slug_text(value: Any) -> str:
    """A parameter's value in a directory name, the same in every process."""
    if isinstance(value, (set, frozenset)):
        return "+".join(_stable_text(value))
    return _param_text(value)


def _option_text(key: str, value: Any) -> str:
    """A field's value as a user would have typed it (``none`` for nothing at all)."""
    if value is None:
        return "all" if key == "checks" else "measured" if key == "steps" else "none"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "none"
    if isinstance(value, dict):
        return " ".join(f"{k}={_param_text(v)}" for k, v in sorted(value.items())) or "none"
    return str(value) if value != "" else "none"


def _param_text(v: object) -> str:
    """``--param`` text that parses back to ``v``: a bare word when it is one, else a literal."""
    if isinstance(v, str) and v.isidentifier() and v not in ("True", "False", "None"):
        return v        # parse_params keeps a word that is not a literal as a string
    return repr(v) if isinstance(v, str) else str(v)
