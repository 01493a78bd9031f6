"""A portfolio of controlled-mode strategies, one member per seed.

No single strategy finds every catalogued bug quickly: the uniform random
walk almost never starves a thread for long (a queued work that must not
have started yet), and PCT with strict priorities rarely produces the
fine-grained interleaving of two threads that a data race needs.  Test
tools answer with a portfolio (Coyote explores by default with "a tuned
portfolio of strategies"; setting one strategy turns it off): here run
``i`` of a campaign uses the member ``i mod N``, so every N consecutive
seeds try every member once, and a campaign finds a bug at about the mean
of the members' per-run rates.

Determinism: the member is a function of the seed alone and is built with
that same seed, so ``Runtime(strategy="portfolio", seed=s)`` schedules
exactly as ``Runtime(strategy=PortfolioStrategy(s).describe(), seed=s)``,
and, as for every strategy, its schedule string replays it.  Seeds with
``s % N == 0`` are the random walk itself: seed 0 of a portfolio campaign
runs what a random-walk campaign ran.

The members were chosen by measurement
(``tools/strategy_power.py``, figures in BENCHMARKS.md).

Kernel counterpart: none (a tester's scheduler, as in Coyote).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import pct, preempt
from .errors import KsyncError
from .strategy_base import RandomStrategy, Strategy, spec_options

#: The members in seed order, as strategy spec strings.  Their k values
#: differ on purpose: a portfolio is not told how many decisions the program
#: makes, so it covers short and long runs.
DEFAULT_MEMBERS: tuple[str, ...] = (
    "random",
    "pct:d=3,k=300",
    "pb:c=1,k=300",
    "pct:d=2,k=100",
    "pct:d=4,k=300",
)


def build_member(spec: str, seed: int) -> Strategy:
    """The strategy of one member spec (``random``, ``pct:...``, ``pb:...``) for ``seed``."""
    kind = spec.partition(":")[0]
    if spec == "random":
        return RandomStrategy(seed)
    if kind == "pct":
        return pct.PCTStrategy(seed, **spec_options(spec, pct.SPEC_KEYS))
    if kind == "pb":
        return preempt.PreemptionBoundedStrategy(seed, **spec_options(spec, preempt.SPEC_KEYS))
    raise KsyncError(f"portfolio member {spec!r}: use 'random', 'pct[:d=D,k=K]' or "
                     "'pb[:c=C,k=K]'")


class PortfolioStrategy(Strategy):
    """Seed ``s`` runs member ``s % len(members)``, built with seed ``s``.

    Cost per decision: the member's own (its ``choose`` is bound directly).
    """

    name = "portfolio"

    def __init__(self, seed: int = 0, members: Sequence[str] = DEFAULT_MEMBERS) -> None:
        if isinstance(members, str) or not members:
            raise KsyncError(f"PortfolioStrategy(members={members!r}): give a non-empty "
                             "sequence of strategy specs")
        self.members = tuple(members)
        self.index = seed % len(self.members)
        self.member = build_member(self.members[self.index], seed)
        # The member's own bound method: a decision costs one call, not two.
        self.choose = self.member.choose          # type: ignore[method-assign]

    def choose(self, runnable: Sequence[Any], current: Any, step: int) -> Any:
        return self.member.choose(runnable, current, step)

    def finish(self, decisions: int) -> None:
        self.member.finish(decisions)

    def describe(self) -> str:
        """The spec of the member this seed runs: the same seed under it schedules alike."""
        return self.members[self.index]
