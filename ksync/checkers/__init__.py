"""The checkers: lockdep, the happens-before race detector, use-after-free,
sleep-in-atomic and the hung-task watchdog.

Importing this package registers each checker under its ``Runtime(checks=...)``
name (``refcount`` needs no checker object: ``ksync.Refcount`` files its own
warnings when that name is enabled).  ``get_checker(rt, name)`` returns the
instance a run uses, e.g. to export lockdep's graph or add race suppressions.
"""

from __future__ import annotations

from typing import Any

from ..runtime import register_checker
from .atomic_sleep import AtomicSleep
from .hung import HungTask
from .lockdep import Lockdep
from .races import RaceDetector, add_suppression
from .uaf import UseAfterFree

register_checker("lockdep", Lockdep)
register_checker("races", RaceDetector)
register_checker("uaf", UseAfterFree)
register_checker("atomic_sleep", AtomicSleep)
register_checker("hung", HungTask)


def get_checker(rt: Any, name: str) -> Any:
    """The checker ``name`` of runtime ``rt`` (None if it is not enabled).

    The runtime keeps its checkers in ``rt.checkers``; this looks one up by
    its ``name`` (a ``Runtime.checker(name)`` method would be the natural home).
    """
    for c in rt.checkers:
        if c.name == name:
            return c
    return None


__all__ = ["AtomicSleep", "HungTask", "Lockdep", "RaceDetector", "UseAfterFree",
           "add_suppression", "get_checker"]
