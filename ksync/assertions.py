"""``lockdep_assert_held`` and friends.

Kernel counterpart: ``lockdep_assert_held()``, ``lockdep_assert_held_read()``,
``lockdep_assert_held_write()`` (include/linux/lockdep.h).  A failed
assertion is a ``warn`` report naming the lock, the mode and the call site.
"""

from __future__ import annotations

from typing import Any

from .errors import KsyncError
from .report import call_site, format_stack, user_stack
from .thread import current_thread

_MODES = {None: None, "any": None, "read": "read", "write": "write"}


def lockdep_assert_held(lock: Any, mode: str | None = None) -> bool:
    """Warn unless the calling thread holds ``lock`` (in ``mode``: "read", "write" or any)."""
    if mode not in _MODES:
        raise KsyncError(f"lockdep_assert_held({lock!r}, mode={mode!r}): "
                         "mode is 'read', 'write' or None")
    t = current_thread()
    if lock.held_by(t, _MODES[mode]):
        return True
    site = call_site()
    want = f" for {mode}" if mode in ("read", "write") else ""
    t.rt.report("warn", f"lockdep_assert_held({lock.name}{want}) failed at {site}",
                f"WARNING: lockdep_assert_held: {t.name}/{t.tid} does not hold "
                f"{lock.name}{want} at\n  {site}\nstack:\n{format_stack(user_stack())}",
                thread=t, lock=lock.name, site=site)
    return False


def lockdep_assert_held_read(lock: Any) -> bool:
    return lockdep_assert_held(lock, "read")


def lockdep_assert_held_write(lock: Any) -> bool:
    return lockdep_assert_held(lock, "write")
