"""Controlled-mode scheduling strategies by name, and the schedule string.

``make_strategy`` turns what ``Runtime(strategy=..., schedule=...)`` was
given into a strategy: a spec string names one of

* ``random``: the seeded uniform random walk (``RandomStrategy``);
* ``pct[:d=DEPTH,k=STEPS]``: probabilistic concurrency testing (``ksync.pct``);
* ``pb[:c=PREEMPTIONS,k=STEPS]``: preemption-bounded random sampling
  (``ksync.preempt``);
* ``portfolio``: one of the above per seed (``ksync.portfolio``), the
  default of ``tdpmmu fuzz``;

and a schedule string always means replay (``ReplayStrategy``).  The
interface, the random walk, replay and the schedule string codec live in
``ksync.strategy_base`` and are re-exported here; this module imports the
strategy modules and none of them imports it, so imports run one way.

Kernel counterpart: none (the front end of a controlled scheduler, as
Coyote's ``--strategy`` option).
"""

from __future__ import annotations

from . import pct, preempt
from .errors import KsyncError
from .pct import PCTStrategy
from .portfolio import PortfolioStrategy
from .preempt import PreemptionBoundedStrategy
from .strategy_base import (
    RandomStrategy,
    ReplayStrategy,
    Strategy,
    decode_schedule,
    encode_schedule,
    spec_options,
)

__all__ = ["STRATEGY_NAMES", "PCTStrategy", "PortfolioStrategy", "PreemptionBoundedStrategy",
           "RandomStrategy", "ReplayStrategy", "Strategy", "decode_schedule",
           "encode_schedule", "make_strategy"]

#: The names a spec string may start with (``tdpmmu fuzz --strategy`` offers them).
STRATEGY_NAMES = ("portfolio", "random", "pct", "pb")


def make_strategy(strategy: Strategy | str | None, seed: int, schedule: str | None) -> Strategy:
    """Build the strategy ``Runtime(strategy=..., schedule=...)`` asks for.

    ``None`` is the random walk.  Strings: ``random``; ``pct`` or
    ``pct:d=DEPTH,k=STEPS``; ``pb`` or ``pb:c=PREEMPTIONS,k=STEPS`` (any key
    may be left out); ``portfolio``.  A schedule string always means replay.
    """
    if schedule is not None:
        return ReplayStrategy(schedule)
    if strategy is None or strategy == "random":
        return RandomStrategy(seed)
    if isinstance(strategy, Strategy):
        return strategy
    if isinstance(strategy, str):
        kind = strategy.partition(":")[0]
        if kind == "pct":
            return PCTStrategy(seed, **spec_options(strategy, pct.SPEC_KEYS))
        if kind == "pb":
            return PreemptionBoundedStrategy(seed, **spec_options(strategy, preempt.SPEC_KEYS))
        if strategy == "portfolio":
            return PortfolioStrategy(seed)
    raise KsyncError(f"unknown strategy {strategy!r}: use 'portfolio', 'random', "
                     "'pct[:d=D,k=K]', 'pb[:c=C,k=K]', a schedule to replay, or a "
                     "ksync.Strategy instance")
