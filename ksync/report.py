"""Reports filed by checkers and by the primitives themselves.

Kernel counterpart: what lockdep, KASAN, refcount_t's WARN and the hung-task
detector print to dmesg. ``text`` is that rendering; ``to_dict`` is the
machine-readable form.
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass, field
from typing import Any

#: Stable report kinds (DESIGN.md, "Public contract"); names never change meaning.
KINDS = (
    "circular-locking-dependency",
    "recursive-locking",
    "deadlock",
    "data-race",
    "use-after-free",
    "double-free",
    "invalid-free",
    "refcount",
    "sleep-in-atomic",
    "hung-task",
    "bad-unlock",
    "held-lock-freed",
    "lock-held-at-exit",
    "warn",
)


@dataclass
class Report:
    """One finding: a stable ``kind``, a one-line ``title`` and the full ``text``."""

    kind: str
    title: str
    text: str
    thread: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "title": self.title, "text": self.text,
                "thread": self.thread, **self.data}

    def __str__(self) -> str:
        return self.text


def user_stack(skip_modules: tuple[str, ...] = ("ksync",), limit: int = 12,
               frame: Any = None) -> list[str]:
    """Return ``file:line function`` lines of the caller's stack, innermost first.

    Frames inside ksync itself are dropped so the first line is the call site
    in the model or the user's script.
    """
    f = frame if frame is not None else sys._getframe(1)
    out: list[str] = []
    while f is not None and len(out) < limit:
        mod = f.f_globals.get("__name__", "")
        if not any(mod == m or mod.startswith(m + ".") for m in skip_modules):
            out.append(f"{f.f_code.co_filename}:{f.f_lineno} {f.f_code.co_name}")
        f = f.f_back
    return out


def call_site(skip_modules: tuple[str, ...] = ("ksync",)) -> str:
    """The innermost frame outside ksync, as ``file:line function``."""
    stack = user_stack(skip_modules, limit=1, frame=sys._getframe(1))
    return stack[0] if stack else "<unknown>"


def format_stack(lines: list[str], indent: str = "  ") -> str:
    return "\n".join(indent + ln for ln in lines)


def thread_stacks(frames: dict[int, Any], names: dict[int, str]) -> str:
    """Every thread's Python stack, as the hung-task report prints them."""
    out = []
    for ident, frame in frames.items():
        out.append(f"task:{names.get(ident, f'thread-{ident}')}")
        out.extend("  " + ln.rstrip() for ln in traceback.format_stack(frame))
    return "\n".join(out)
