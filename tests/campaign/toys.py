"""Toy programs with known bug depth, for the strategy tests."""

from __future__ import annotations

import ksync

#: Steps of the window bug's writer and reader; the window is one step wide.
WRITER_STEPS = 6
READER_STEPS = 12


def window_bug(rt: ksync.Runtime) -> None:
    """A depth-2 ordering bug: ``reader``'s last read must land in ``writer``'s window.

    ``writer`` sets a flag early and clears it at its next step; ``reader``
    checks it only at the end of its run.  The bug needs two orderings: the
    set before the check and the check before the clear.
    """
    flag = ksync.Atomic(0, name="flag")
    tick = ksync.Atomic(0, name="tick")

    def writer() -> None:
        for i in range(WRITER_STEPS):
            if i == 3:
                flag.set(1)
                flag.set(0)
            else:
                tick.read()

    def reader() -> None:
        for _ in range(READER_STEPS):
            tick.read()
        if flag.read() == 1:
            ksync.current_runtime().report("warn", "reader saw the transient flag",
                                           "WARNING: reader saw the transient flag")

    ts = [rt.spawn(writer, name="writer"), rt.spawn(reader, name="reader")]
    for t in ts:
        rt.join(t)


def lost_update(rt: ksync.Runtime, threads: int = 2) -> None:
    """Two threads increment a counter with read-then-write: a depth-1 atomicity bug."""
    counter = ksync.Atomic(0, name="counter")

    def inc() -> None:
        v = counter.read()
        counter.set(v + 1)

    ts = [rt.spawn(inc, name=f"inc{i}") for i in range(threads)]
    for t in ts:
        rt.join(t)
    if counter.read() != threads:
        rt.report("warn", "lost update", f"WARNING: counter is {counter.read()}, not {threads}")
