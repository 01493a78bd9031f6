"""Rendering of lockdep's findings in the kernel's shape.

Kernel counterparts: ``print_circular_bug()`` with
``print_circular_lock_scenario()``, ``print_deadlock_bug()`` (recursive
locking) and ``print_freed_lock_bug()`` in kernel/locking/lockdep.c.  Lock
usage bits (``{+.+.}``) have no meaning here, so a lock prints as
``(class){mode}``; stacks are Python frames outside ksync.
"""

from __future__ import annotations

from typing import Any

from . import _stacks
from .lockdep_graph import Dep

_BAR = "======================================================"
_DASH = "------------------------------------------------------"


def lock_desc(key: str, mode: str, site: _stacks.Stack | None = None) -> str:
    at = f", at: {_stacks.top(site)}" if site else ""
    return f" ({key}){{{mode}}}{at}"


def _verb(mode: str) -> str:
    # The kernel's scenario table writes rlock() for a reader.
    return "lock" if mode == "write" else "rlock"


def held_block(t: Any, held: list, sites: list | None) -> list[str]:
    n = len(held)
    if not n:
        return [f"no locks held by {t.name}/{t.tid}."]
    word = "lock" if n == 1 else "locks"
    return [f"{n} {word} held by {t.name}/{t.tid}:", *_stacks.held_locks(held, sites)]


def circular(t: Any, prev_key: str, prev_mode: str, prev_site: _stacks.Stack | None,
             next_key: str, next_mode: str, site: _stacks.Stack, path: list[Dep], new: Dep,
             held: list, sites: list | None, stack: _stacks.Stack) -> str:
    """The circular-dependency report: ``path`` runs next -> .. -> prev, ``new`` is prev -> next."""
    lines = [_BAR, "WARNING: possible circular locking dependency detected", _DASH,
             f"{t.name}/{t.tid} is trying to acquire lock:",
             lock_desc(next_key, next_mode, site), "",
             "but task is already holding lock:",
             lock_desc(prev_key, prev_mode, prev_site), "",
             "which lock already depends on the new lock.", "", "",
             "the existing dependency chain (in reverse order) is:"]
    # Each entry names the lock acquired by one dependency and the stack
    # where that dependency was first recorded; #0 is the one being added.
    depth = len(path)
    for dep in reversed(path):
        lines += ["", f"-> #{depth} ({dep.next}){{{dep.next_mode}}}:",
                  f"       first seen in {dep.thread}/{dep.tid} holding ({dep.prev}){{{dep.prev_mode}}}:",
                  _stacks.indented(dep.stack)]
        depth -= 1
    lines += ["", f"-> #0 ({new.next}){{{new.next_mode}}}:",
              f"       {new.thread}/{new.tid} holding ({new.prev}){{{new.prev_mode}}}:",
              _stacks.indented(new.stack), "",
              "other info that might help us debug this:", ""]
    parent = path[-1]          # the dependency into the held lock
    if len(path) > 1:
        chain = " --> ".join([next_key, *(d.next for d in path)])
        lines += ["Chain exists of:", f"  {chain}", ""]
    col = " " * 31
    lines += [" Possible unsafe locking scenario:", "",
              "       CPU0                    CPU1",
              "       ----                    ----",
              f"  {_verb(prev_mode)}({prev_key});",
              f"{col}{_verb(parent.prev_mode)}({parent.prev});",
              f"{col}{_verb(parent.next_mode)}({prev_key});",
              f"  {_verb(next_mode)}({next_key});", "",
              " *** DEADLOCK ***", ""]
    lines += held_block(t, held, sites)
    lines += ["", "stack backtrace:", _stacks.indented(stack, "  ")]
    return "\n".join(lines)


def recursive(t: Any, key: str, held_mode: str, held_site: _stacks.Stack | None,
              mode: str, site: _stacks.Stack, held: list, sites: list | None,
              stack: _stacks.Stack) -> str:
    lines = ["============================================",
             "WARNING: possible recursive locking detected",
             "--------------------------------------------",
             f"{t.name}/{t.tid} is trying to acquire lock:",
             lock_desc(key, mode, site), "",
             "but task is already holding lock:",
             lock_desc(key, held_mode, held_site), "",
             "other info that might help us debug this:",
             " Possible unsafe locking scenario:", "",
             "       CPU0", "       ----",
             f"  {_verb(held_mode)}({key});", f"  {_verb(mode)}({key});", "",
             " *** DEADLOCK ***", ""]
    if mode == "read" and held_mode != "write":
        lines += [" read_lock() of an rwlock_t in task context is not a recursive reader:",
                  " a writer that starts waiting between the two acquisitions blocks the",
                  " second one, and the writer waits for the first.", ""]
    else:
        lines += [" May be due to missing lock nesting notation", ""]
    lines += held_block(t, held, sites)
    lines += ["", "stack backtrace:", _stacks.indented(stack, "  ")]
    return "\n".join(lines)


def freed(t: Any, obj_name: str, hits: list[tuple[Any, Any, str, str]],
          held: list, sites: list | None, stack: _stacks.Stack) -> str:
    """``hits``: (holder thread, lock, mode, path inside the freed object)."""
    lines = ["=========================", "WARNING: held lock freed!",
             "-------------------------",
             f"{t.name}/{t.tid} is freeing memory {obj_name}, with a lock still held there!"]
    for holder, lk, mode, where in hits:
        who = "by this task" if holder is t else f"by {holder.name}/{holder.tid}"
        lines.append(f" ({_stacks.class_name(lk)}){{{mode}}} as {where}, held {who}")
    lines.append("")
    lines += held_block(t, held, sites)
    lines += ["", "stack backtrace:", _stacks.indented(stack, "  ")]
    return "\n".join(lines)
