"""Rendering of a deadlock found by the runtime (every live thread waits).

Kernel counterpart: none directly — lockdep predicts deadlocks, the hung-task
detector notices them late.  Here the runtime sees the whole wait-for graph at
the moment the last runnable thread parks, so the report can name each
blocked thread, what it waits for, who holds that, and the cycle.
"""

from __future__ import annotations

from typing import Any

from .thread import BLOCKED, DONE, IDLE, SLEEPING


def holders_of(obj: Any) -> list[Any]:
    """Threads that hold ``obj`` (a lock's owner and readers, a thread to join)."""
    fn = getattr(obj, "holders", None)
    if fn is not None:
        return list(fn())
    if hasattr(obj, "tid") and getattr(obj, "state", None) is not DONE:
        return [obj]        # joining a thread waits for that thread
    return []


def find_cycle(threads: list[Any]) -> list[Any]:
    """A cycle in the wait-for graph (thread -> holders of what it waits on), or []."""
    edges = {t.tid: [h for h in holders_of(t.blocked_on) if h is not t]
             for t in threads if t.blocked_on is not None and t.state is BLOCKED}
    for start in sorted(edges):
        path: list[int] = []
        seen: set[int] = set()
        node = start
        while node in edges and node not in seen and edges[node]:
            seen.add(node)
            path.append(node)
            node = edges[node][0].tid
        if node in path:
            by_tid = {t.tid: t for t in threads}
            return [by_tid[i] for i in path[path.index(node):]]
    return []


def describe_deadlock(rt: Any) -> tuple[str, str]:
    threads = [t for t in rt.threads if t.state is not DONE]
    cycle = find_cycle(threads)
    lines = ["============================================",
             "WARNING: deadlock: no runnable thread while some wait",
             "--------------------------------------------"]
    for t in threads:
        if t.state in (BLOCKED, IDLE, SLEEPING):
            holders = holders_of(t.blocked_on)
            held_by = ", ".join(h.name for h in holders) if holders else "nobody"
            what = " (idle kthread)" if t.state is IDLE else ""
            lines.append(f"  {t.name} waits for {t.wait_desc}{what}, held by {held_by}")
        else:
            lines.append(f"  {t.name} is {t.state}")
        for lk, mode in t.held:
            lines.append(f"      holds {getattr(lk, 'name', lk)} ({mode})")
    if cycle:
        chain = " -> ".join(t.name for t in cycle) + f" -> {cycle[0].name}"
        lines.append(f"wait-for cycle: {chain}")
        title = "deadlock: " + ", ".join(f"{t.name} waits for {t.wait_desc}" for t in cycle)
    else:
        blocked = [t for t in threads if t.state is BLOCKED]
        title = "deadlock: " + ", ".join(f"{t.name} waits for {t.wait_desc}" for t in blocked)
    lines.append("every thread is unwound from its wait point")
    return title, "\n".join(lines)
