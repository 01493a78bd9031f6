"""The text trace: one column per thread, one row per thing worth reading.

Kernel counterpart: reading ``trace-cmd report`` of the lock, workqueue and
kvmmmu tracepoints, with the noise already filtered out.  Each row is one
summarised event in the column of the thread that did it, under the
scheduling step it happened at (wall-clock microseconds in free mode):

    +mmu_lock(R) / -mmu_lock(R)   took / dropped kvm->mmu_lock for read (W: write)
    +-mmu_lock(R)                 took and dropped it, nothing else shown in between
    waits mmu_lock(W)             blocked: the lock is held in a conflicting mode
    root#1 ref 1->2 get           a root's refcount changed (get, put, set, ...)
    root#1 invalid                the invalid flag was set
    queue/run/done [root#1 zap]   a work item queued, started and finished
    zapped 64 SPTEs               SPTEs zapped (alloc/free N page tables: pages)
    !! data-race                  a checker filed a report here

Hidden by default (``hide``): the vCPU guest-mode handshake lock, request
bits, RCU read sections, lockdep's work-queue maps, instrumented accesses and
happens-before edges.  Runs of identical rows repeat as ``(...) xN``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from dataclasses import dataclass

from ksync import events as ev

from .probes import split_value
from .record import Trace, is_pseudo_lock, lock_label, short_name

#: Objects whose events a trace leaves out unless asked (``hide=()`` shows them).
DEFAULT_HIDE = ("vcpu->mode", "->requests", "rcu_read_lock")

_LEGEND = ("+L(R)/-L(R): acquired/released lock L for read (W write, r RCU-style reader); "
           "+-L(R): acquired and released it; "
           "waits X: blocked on X; ref a->b: refcount change; queue/run/done [w]: work "
           "item w queued, started, finished; zapped N SPTEs: SPTEs torn down; "
           "alloc/free N page tables: page-table pages; (...) xN: repeated N times; !!: a report fired")

_SILENT = {ev.CONTENDED, ev.MIGHT_SLEEP, ev.ACCESS, ev.HB_RELEASE, ev.HB_ACQUIRE,
           ev.RCU_LOCK, ev.RCU_UNLOCK, ev.RCU_GP, ev.RCU_CALLBACK, ev.SPAWN, ev.WAKE}


@dataclass
class Row:
    """One cell: ``text`` in ``thread``'s column at ``step``; ``report`` rows span the width."""

    step: int
    thread: str
    text: str
    report: bool = False
    unit: tuple[str, str] | None = None     # (verb, unit) of a row that counts things
    n: int = 0


def summarise(trace: Trace, hide: Iterable[str] = DEFAULT_HIDE) -> list[Row]:
    """Turn the raw events into readable rows (no layout yet)."""
    s = _Summariser(tuple(hide))
    clock = trace.mode == "controlled"
    for (step, th, kind, obj, arg), t in zip(trace.events, trace.times, strict=True):
        # Free mode has no scheduling steps: rows are placed by wall time in us.
        s.feed(step if clock else t // 1000, th, kind, obj, arg)
    return _compress(s.rows)


class _Summariser:
    """Per-thread state needed to merge events into rows."""

    def __init__(self, hide: tuple[str, ...]) -> None:
        self.hide = hide
        self.rows: list[Row] = []
        self.pending: dict[str, tuple[str, str]] = {}    # thread -> lock it is acquiring
        self.totals: dict[str, int] = {}                  # probed counter -> last value

    def hidden(self, name: str) -> bool:
        return is_pseudo_lock(name) or any(h in name for h in self.hide)

    def add(self, step: int, thread: str, text: str) -> None:
        self.rows.append(Row(step, thread, text))

    def count(self, step: int, thread: str, verb: str, n: int, unit: str) -> None:
        """A ``verb N unit`` row that adds up with the thread's previous one of the same kind."""
        last = self.rows[-1] if self.rows else None
        if last is not None and last.thread == thread and last.unit == (verb, unit):
            last.n += n
        else:
            last = Row(step, thread, "", unit=(verb, unit), n=n)
            self.rows.append(last)
        last.text = f"{verb} {last.n} {unit}"

    def feed(self, step: int, th: str, kind: str, obj: str, arg: str) -> None:
        if kind in _SILENT:
            return
        if kind == ev.REPORT:
            who = f" ({th})" if th else ""
            self.rows.append(Row(step, th, f"!! {obj}{who}: {arg}", report=True))
            return
        if kind in (ev.ACQUIRE, ev.ACQUIRED, ev.RELEASE, ev.BLOCK) and self.hidden(obj):
            return
        handler = getattr(self, "on_" + kind, None)
        if handler is not None:
            handler(step, th, obj, arg)

    # -- locks and waits
    def on_acquire(self, step: int, th: str, obj: str, arg: str) -> None:
        self.pending[th] = (obj, arg)

    def on_acquired(self, step: int, th: str, obj: str, arg: str) -> None:
        self.pending.pop(th, None)
        self.add(step, th, "+" + lock_label(obj, arg))

    def on_release(self, step: int, th: str, obj: str, arg: str) -> None:
        label = lock_label(obj, arg)
        last = self.rows[-1] if self.rows else None
        if last is not None and last.thread == th and last.text == "+" + label:
            last.text = "+-" + label        # taken and dropped with nothing worth a row between
            return
        self.add(step, th, "-" + label)

    def on_block(self, step: int, th: str, obj: str, arg: str) -> None:
        want = self.pending.get(th)
        if want is not None and want[0] == obj:
            what = lock_label(*want)
        elif arg.startswith("join ") or arg.startswith("exit of "):
            what = arg
        elif arg.startswith("flush_workqueue ") or arg.startswith("flush of "):
            what = f"flush({arg.split(' ')[-1]})"
        else:
            what = short_name(arg)
        text = "sleeps" if arg == "sleep" else f"waits {what}"
        last = self.rows[-1] if self.rows else None
        if last is not None and last.thread == th and (
                last.text == text or (text == "sleeps" and last.text.startswith("sleep "))):
            return          # re-blocking after a wake-up, or the sleep already shown
        self.add(step, th, text)

    # -- counters
    def on_refcount(self, step: int, th: str, obj: str, arg: str) -> None:
        op, old, new = (arg.split(",") + ["", "", ""])[:3]
        if op == "read" or self.hidden(obj):
            return
        verb = {"inc_not_zero": "get", "dec_and_test": "put"}.get(op, op)
        self.add(step, th, f"{short_name(obj)} {old}->{new} {verb}")

    def on_atomic(self, step: int, th: str, obj: str, arg: str) -> None:
        op, old, new = (arg.split(",") + ["", "", ""])[:3]
        if old != new and not self.hidden(obj):
            self.add(step, th, f"{short_name(obj)} {old}->{new} {op}")

    def on_write(self, step: int, th: str, obj: str, arg: str) -> None:
        if not self.hidden(obj):
            self.add(step, th, f"{obj} := {arg}")

    def on_read(self, step: int, th: str, obj: str, arg: str) -> None:
        if not self.hidden(obj):
            self.add(step, th, f"read {obj} ({arg})")

    def on_state(self, step: int, th: str, obj: str, arg: str) -> None:
        name, _, fld = obj.rpartition(".")
        if fld == "invalid":
            self.add(step, th, f"{short_name(name)} {'invalid' if arg == 'yes' else 'valid'}")
            return
        value, th = split_value(arg, th)
        before = self.totals.get(obj, 0)
        self.totals[obj] = value
        delta = value - before
        if delta <= 0:
            return
        if fld == "zapped_sptes":
            self.count(step, th, "zapped", delta, "SPTEs")
        elif fld == "tlb_flushes":
            self.add(step, th, "flush TLBs")

    # -- objects
    def on_alloc(self, step: int, th: str, obj: str, arg: str) -> None:
        if arg == "page table":
            self.count(step, th, "alloc", 1, "page tables")
        elif not self.hidden(obj):
            self.add(step, th, f"new {short_name(obj)}")

    def on_free(self, step: int, th: str, obj: str, arg: str) -> None:
        if obj == "SPPage":
            self.count(step, th, "free", 1, "page tables")
        elif not self.hidden(obj):
            self.add(step, th, f"free {short_name(obj)}")

    # -- threads, sleeps, completions
    def on_start(self, step: int, th: str, obj: str, arg: str) -> None:
        self.add(step, th, "start")

    def on_exit(self, step: int, th: str, obj: str, arg: str) -> None:
        self.add(step, th, "exit")

    def on_join(self, step: int, th: str, obj: str, arg: str) -> None:
        self.add(step, th, f"joined {obj}")

    def on_sleep(self, step: int, th: str, obj: str, arg: str) -> None:
        self.add(step, th, f"sleep {arg}".rstrip())

    def on_complete(self, step: int, th: str, obj: str, arg: str) -> None:
        self.add(step, th, f"complete {obj}")

    def on_wait_done(self, step: int, th: str, obj: str, arg: str) -> None:
        self.add(step, th, f"woken by {obj}")

    # -- work queues (their events come as CUSTOM with the operation first)
    def on_custom(self, step: int, th: str, obj: str, arg: str) -> None:
        op, _, rest = arg.partition(",")
        work = short_name(obj)
        if op in ("queue_work", "queue_delayed_work", "mod_delayed_work"):
            self.add(step, th, f"queue [{work}]")
        elif op == "work_start":
            self.add(step, th, f"run [{work}]")
        elif op == "work_end":
            self.add(step, th, f"done [{work}]")
        elif op in ("flush_workqueue", "flush_work", "cancel_work_sync", "cancel_work",
                    "destroy_workqueue", "alloc_workqueue"):
            self.add(step, th, f"{op}({rest.split(',')[0] if op == 'alloc_workqueue' else work})")
        elif op:
            self.add(step, th, f"{op} {work}")


def _compress(rows: list[Row]) -> list[Row]:
    """Fold a thread's consecutive repeats of a 1-4 row pattern into one ``(...) xN`` row."""
    out: list[Row] = []
    i = 0
    while i < len(rows):
        best_k, best_n = 1, 1
        for k in range(1, 5):
            pat = rows[i:i + k]
            if len(pat) < k or any(r.report or r.thread != pat[0].thread for r in pat):
                break
            n = 1
            while [r.text for r in rows[i + n * k:i + (n + 1) * k]] == [r.text for r in pat] \
                    and all(r.thread == pat[0].thread for r in rows[i + n * k:i + (n + 1) * k]):
                n += 1
            if n >= 2 and n * k > best_n * best_k:
                best_k, best_n = k, n
        if best_n >= 2:
            texts = "; ".join(r.text for r in rows[i:i + best_k])
            out.append(Row(rows[i].step, rows[i].thread, f"({texts}) x{best_n}"))
            i += best_k * best_n
        else:
            out.append(rows[i])
            i += 1
    return out


def render_trace(trace: Trace, *, width: int = 21, hide: Iterable[str] = DEFAULT_HIDE,
                 max_rows: int | None = None, legend: bool = True,
                 window: tuple[int, int] | None = None) -> str:
    """The column-per-thread text of ``trace``; ``width`` is each column's width.

    ``window=(first, last)`` keeps only the rows of scheduling steps in that range
    (of wall-clock microseconds for a free-mode run, whose rows are placed by time).
    """
    if width < 8:
        raise ValueError(f"render_trace(width={width}): columns need at least 8 characters")
    rows = summarise(trace, hide)
    if window is not None:
        rows = [r for r in rows if window[0] <= r.step <= window[1]]
    threads = [t for t in trace.threads
               if any(r.thread == t and r.text not in ("start", "exit") for r in rows)]
    col = {t: i for i, t in enumerate(threads)}
    out = []
    if trace.title:
        out.append(f"trace: {trace.title}")
    sw = max(5, len(str(max((r.step for r in rows), default=0))))
    unit = "step" if trace.mode == "controlled" else "us"
    header = f"{unit:>{sw}} | " + " | ".join(f"{t[:width]:<{width}}" for t in threads)
    out += [header.rstrip(), "-" * len(header)]
    shown = 0
    for r in rows:
        if max_rows is not None and shown >= max_rows:
            out.append(f"... {len(rows) - shown} more rows (no row limit: max_rows=None)")
            break
        shown += 1
        if r.report:
            out.append(f"{r.step:{sw}d} | {r.text}")
            continue
        if r.thread not in col:
            continue
        for j, piece in enumerate(textwrap.wrap(r.text, width) or [""]):
            cells = [""] * len(threads)
            cells[col[r.thread]] = piece
            step = f"{r.step:{sw}d}" if j == 0 else " " * sw
            out.append((f"{step} | " + " | ".join(f"{c:<{width}}" for c in cells)).rstrip())
    if legend:
        out.append("")
        out += textwrap.wrap(_LEGEND, max(60, min(len(header), 100)))
    return "\n".join(out)


__all__ = ["DEFAULT_HIDE", "Row", "render_trace", "summarise"]
