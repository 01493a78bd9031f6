"""CPU affinity of a controlled run: every managed thread on one core.

Kernel counterpart: ``sched_setaffinity(2)`` as a test harness uses it (the
kernel's own selftests pin vCPU threads with ``pin_task_to_cpu``).  Controlled
mode runs exactly one managed thread at a time and hands the CPU over a few
hundred times per run; when the threads sit on different cores each handoff
is a cross-core wakeup (an IPI, a cache migration, the GIL bouncing between
cores), measured at 1.5-2x the cost of a switch on one core.  So a controlled
runtime pins the thread that enters it, before any managed thread exists;
threads inherit their creator's mask, and the entering thread's old mask is
restored at exit.  Free mode is never pinned: it wants real parallelism.

Which core: ``Runtime(pin=...)`` — ``None`` (the default) reads the
environment variable ``KSYNC_PIN``: unset or ``auto`` pins to the core the
entering thread is on now (the OS has already balanced it there), ``off``
(or ``no``, ``false``, ``none``) does not pin, a number pins to that CPU.
``True`` is ``auto`` whatever the environment says, ``False`` never pins,
an ``int`` is a CPU (``0`` is CPU 0, not "off").  A campaign with a worker
process per CPU gives each a CPU of its own through ``KSYNC_PIN``.
"""

from __future__ import annotations

import os

from .errors import KsyncError

ENV = "KSYNC_PIN"
_OFF = ("off", "no", "false", "none")


def supported() -> bool:
    """True where threads can be pinned (Linux)."""
    return hasattr(os, "sched_setaffinity") and hasattr(os, "sched_getaffinity")


def current_cpu() -> int | None:
    """The CPU the calling thread runs on now (``/proc/thread-self/stat``), or None."""
    try:
        with open("/proc/thread-self/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # Field 39 (processor) counted after the command name, which may hold spaces.
    fields = stat[stat.rfind(b")") + 2:].split()
    try:
        return int(fields[36])
    except (IndexError, ValueError):
        return None


def choose_cpu(pin: bool | int | None) -> int | None:
    """The CPU a controlled runtime should pin to, or None for no pinning.

    Bad values (an unknown CPU, an unreadable ``KSYNC_PIN``) are a KsyncError
    naming where the value came from; nothing is silently ignored.
    """
    if pin is False or not supported():
        return None
    source = f"Runtime(pin={pin!r})"
    if pin is None or pin is True:
        raw = os.environ.get(ENV, "").strip().lower() if pin is None else "auto"
        if raw in _OFF:
            return None
        if raw in ("", "auto"):
            cpu = current_cpu()
            allowed = os.sched_getaffinity(0)
            return cpu if cpu in allowed else min(allowed)
        source = f"{ENV}={raw!r}"
        try:
            pin = int(raw)
        except ValueError:
            raise KsyncError(f"{source}: expected a CPU number, 'auto' or 'off'") from None
    if not isinstance(pin, int) or pin < 0:
        raise KsyncError(f"{source}: a CPU is a number >= 0")
    allowed = os.sched_getaffinity(0)
    if pin not in allowed:
        raise KsyncError(f"{source}: CPU {pin} is not one this process may use "
                         f"(allowed: {sorted(allowed)})")
    return pin


def pin_calling_thread(cpu: int) -> set[int]:
    """Pin the calling thread (and the threads it creates later) to ``cpu``; return its old mask."""
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    return old


def restore(mask: set[int]) -> None:
    """Give the calling thread back the mask ``pin_calling_thread`` returned."""
    try:
        os.sched_setaffinity(0, mask)
    except OSError:
        pass        # CPUs went offline meanwhile: keep the pin rather than fail the run's exit
