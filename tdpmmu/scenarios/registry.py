"""The scenario registry: ``Scenario``, the ``@scenario`` decorator, ``get_scenario``.

Apart from the package ``__init__`` because every scenario module registers
itself here: importing the package would make each module import the
``__init__`` that imports it (a cycle).  ``tdpmmu.scenarios`` re-exports
these names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..bugs import check_bug_names
from ..kvm import ZAP_MODES


class UnknownScenario(ValueError):
    """A scenario name, or a parameter of one, that does not exist."""


@dataclass(frozen=True)
class Scenario:
    """One registered scenario: its name, a one-line summary, the function, its defaults."""

    name: str
    summary: str
    fn: Callable[..., None]
    params: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self, *, zap: str = "async", bugs: Iterable[str] = (), **params: Any) -> None:
        """Run the scenario on the calling (managed) thread with defaults overridden by ``params``."""
        if zap not in ZAP_MODES:
            raise UnknownScenario(f"scenario {self.name}: zap={zap!r}; one of "
                                  f"{', '.join(ZAP_MODES)}")
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            raise UnknownScenario(f"scenario {self.name} has no parameter(s) "
                                  f"{', '.join(unknown)}; it takes "
                                  f"{', '.join(self.params) or 'none'}")
        merged = {**self.params, **params}
        self.fn(zap=zap, bugs=check_bug_names(bugs), **merged)


SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str, summary: str, **defaults: Any) -> Callable[[Callable[..., None]],
                                                                    Callable[..., None]]:
    """Register the decorated function as scenario ``name`` with these default parameters."""
    def register(fn: Callable[..., None]) -> Callable[..., None]:
        if name in SCENARIOS:
            raise ValueError(f"scenario {name!r} registered twice")
        SCENARIOS[name] = Scenario(name, summary, fn, dict(defaults))
        return fn
    return register


def get_scenario(name: str) -> Scenario:
    """The scenario called ``name``; an unknown name lists the known ones."""
    s = SCENARIOS.get(name)
    if s is None:
        raise UnknownScenario(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    return s
