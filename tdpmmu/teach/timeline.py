"""The timeline: a Gantt chart of every thread of a traced run, drawn to a PNG.

Kernel counterpart: the picture ``kernelshark`` draws from a trace — one lane
per task, coloured by what the task was doing.  Here each lane shows, over
virtual time (controlled mode: one scheduling step is one tick of 1 us) or
wall time (free mode):

* a thin grey bar while the thread is alive;
* a green band while a kworker runs a work item (the item is named on it);
* a blue band while the thread holds ``kvm->mmu_lock`` — light for read,
  dark for write;
* a red (mmu_lock), orange (another lock), purple (a flush) or grey (join,
  sleep, RCU) block while the thread waits, labelled with what it waits on;
* a red dashed line and a star on the filing thread's lane at each report,
  numbered, and the reports listed under the chart;
* a black dotted line where ``struct kvm`` is freed.

``intervals(trace)`` gives the same data as plain tuples, for tests and for
anyone who wants another rendering.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ksync import events as ev

from .record import Trace, is_pseudo_lock, lock_label, short_name
from .trace import DEFAULT_HIDE

MMU_LOCK = "kvm->mmu_lock"

#: Segment kinds, the order they are drawn in, and their colours.
COLOURS = {
    "alive": "#d9d9d9",
    "work": "#4daf4a",
    "mmu_lock(R)": "#9ecae1",
    "mmu_lock(W)": "#08519c",
    "wait mmu_lock": "#e41a1c",
    "wait lock": "#ff7f00",
    "wait flush": "#984ea3",
    "wait other": "#969696",
}

_LEGEND = {
    "alive": "alive (runnable or running)",
    "work": "running a work item",
    "mmu_lock(R)": "holds mmu_lock for read",
    "mmu_lock(W)": "holds mmu_lock for write",
    "wait mmu_lock": "blocked on mmu_lock",
    "wait lock": "blocked on another lock",
    "wait flush": "blocked in a flush",
    "wait other": "blocked: join / sleep / RCU",
}


@dataclass(frozen=True)
class Segment:
    """``thread`` was in state ``kind`` (a COLOURS key) over [start_ns, end_ns); ``label`` says on what."""

    thread: str
    kind: str
    start_ns: int
    end_ns: int
    label: str = ""


def intervals(trace: Trace, hide: Iterable[str] = DEFAULT_HIDE) -> list[Segment]:
    """Every state interval of every thread, in a deterministic order."""
    hide = tuple(hide)
    end = trace.end_ns + _min_width(trace)
    segs: list[Segment] = []
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    held: dict[tuple[str, str], tuple[int, int]] = {}   # (thread, mode) -> (depth, since)
    work: dict[str, tuple[int, str]] = {}
    waiting: dict[str, tuple[int, str, str]] = {}
    acquiring: dict[str, str] = {}
    for (_step, th, kind, obj, arg), t in zip(trace.events, trace.times, strict=True):
        if kind == ev.REPORT:
            continue
        first.setdefault(th, t)
        last[th] = t
        if th in waiting and kind != ev.BLOCK:
            since, wkind, label = waiting.pop(th)
            segs.append(Segment(th, wkind, since, t, label))
        if kind == ev.ACQUIRE:
            acquiring[th] = lock_label(obj, arg)
        elif kind == ev.BLOCK and th not in waiting:
            if not any(h in obj for h in hide):
                waiting[th] = (t, *_wait_kind(obj, arg, acquiring.get(th, "")))
        elif kind == ev.ACQUIRED and obj == MMU_LOCK:
            depth, since = held.get((th, arg), (0, t))
            held[(th, arg)] = (depth + 1, since)
        elif kind == ev.RELEASE and obj == MMU_LOCK and (th, arg) in held:
            depth, since = held.pop((th, arg))
            if depth > 1:
                held[(th, arg)] = (depth - 1, since)
            else:
                segs.append(Segment(th, lock_label(obj, arg).replace("(r)", "(R)"), since, t))
        elif kind == ev.CUSTOM and arg.startswith("work_start,"):
            work[th] = (t, short_name(obj))
        elif kind == ev.CUSTOM and arg.startswith("work_end,") and th in work:
            since, name = work.pop(th)
            segs.append(Segment(th, "work", since, t, name))
        elif kind == ev.EXIT:
            segs.append(Segment(th, "alive", first[th], t))
    for th, (since, wkind, label) in waiting.items():
        segs.append(Segment(th, wkind, since, end, label))
    for (th, mode), (_, since) in held.items():
        segs.append(Segment(th, lock_label(MMU_LOCK, mode), since, end))
    for th, (since, name) in work.items():
        segs.append(Segment(th, "work", since, end, name))
    alive = {s.thread for s in segs if s.kind == "alive"}
    segs += [Segment(th, "alive", first[th], end) for th in first if th not in alive]
    order = list(COLOURS)
    return sorted(segs, key=lambda s: (s.thread, order.index(s.kind), s.start_ns, s.end_ns))


def _wait_kind(obj: str, desc: str, acquiring: str) -> tuple[str, str]:
    if obj == MMU_LOCK:
        return "wait mmu_lock", acquiring or "mmu_lock"
    if desc.startswith(("flush", "cancel")):
        return "wait flush", f"flush({short_name(desc.split(' ')[-1])})"
    if desc.startswith(("join ", "exit of ", "sleep", "RCU", "completion")) or obj == "rcu":
        return "wait other", short_name(desc)
    if is_pseudo_lock(obj):
        return "wait flush", short_name(obj)
    return "wait lock", acquiring or short_name(obj)


def _min_width(trace: Trace) -> int:
    """The narrowest segment drawn: one tick, so an instant still shows."""
    span = max(trace.end_ns, 1)
    return max(span // 400, 1)


def lanes(trace: Trace, segs: list[Segment]) -> list[str]:
    """Threads worth a lane: those that did more than start and exit (rescuers stay out)."""
    busy = {s.thread for s in segs if s.kind != "alive"}
    reporters = {th for _, _, th, _, _ in trace.reports()}
    return [t for t in trace.threads if t in busy or t in reporters or t == "main"]


def window_ns(trace: Trace, window: tuple[int, int] | None) -> tuple[int, int]:
    """The times spanned by the scheduling steps ``window=(first, last)``; all when None."""
    if window is None:
        return 0, trace.end_ns
    inside = [t for (s, *_), t in zip(trace.events, trace.times, strict=True)
              if window[0] <= s <= window[1]]
    if not inside:
        raise ValueError(f"timeline window {window}: no event in those steps "
                         f"(the run has steps 0..{trace.events[-1][0] if trace.events else 0})")
    return min(inside), max(inside)


def render_timeline(trace: Trace, path: str | Path, *, hide: Iterable[str] = DEFAULT_HIDE,
                    dpi: int = 110, window: tuple[int, int] | None = None) -> Path:
    """Draw the Gantt chart of ``trace`` to the PNG file ``path``; returns the path.

    ``window=(first, last)`` zooms on those scheduling steps.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"timeline {path}: the file name must end in .png")
    if not path.parent.exists():
        raise ValueError(f"timeline {path}: directory {path.parent} does not exist")
    t0, t1 = window_ns(trace, window)
    segs = [Segment(s.thread, s.kind, max(s.start_ns, t0), min(s.end_ns, t1), s.label)
            for s in intervals(trace, hide) if s.end_ns >= t0 and s.start_ns <= t1]
    names = lanes(trace, segs)
    scale, unit = (1e3, "us") if trace.end_ns < 5e7 else (1e6, "ms")
    shown = reports_text(trace)
    fig = Figure(figsize=(13, 2.4 + 0.75 * len(names) + 0.2 * len(shown)), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    row = {n: len(names) - 1 - i for i, n in enumerate(names)}
    span = max(t1 - t0, 1)
    minw = max(span // 400, 1)
    for s in segs:
        if s.thread not in row:
            continue
        y = row[s.thread]
        x0, w = s.start_ns / scale, max(s.end_ns - s.start_ns, minw) / scale
        lo, h = _band(s.kind)
        ax.broken_barh([(x0, w)], (y + lo, h), facecolors=COLOURS[s.kind], edgecolor="none")
        if s.label and (s.end_ns - s.start_ns) > span * 0.06:
            dark = s.kind in ("mmu_lock(W)", "wait mmu_lock", "wait flush", "work")
            ax.text(x0 + w / 2, y + lo + h / 2, s.label, ha="center", va="center",
                    fontsize=7, color="white" if dark else "black", clip_on=True)
    frees = [(t, name) for t, name in frees_of_note(trace) if t0 <= t <= t1]
    for t, name in frees:
        if t0 <= t <= t1:
            ax.axvline(t / scale, color="black", linestyle=":", linewidth=1.2)
            ax.annotate(f"free {name}", (t / scale, len(names) + 0.45), fontsize=8,
                        ha="right", annotation_clip=False)
    reports = trace.reports()
    for i, (_, t, th, _kind, _title) in enumerate(reports):
        if not t0 <= t <= t1:
            continue
        x = t / scale
        ax.axvline(x, color="#e41a1c", linestyle="--", linewidth=1)
        if th in row:
            ax.plot([x], [row[th] + 0.5], marker="*", markersize=14, color="#e41a1c",
                    markeredgecolor="black", zorder=5)
        ax.annotate(str(i + 1), (x, len(names) + 0.02 + 0.22 * (i % 3)), fontsize=9,
                    fontweight="bold", color="#b00000", ha="center", annotation_clip=False,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "#b00000"})
    ax.set_yticks([row[n] + 0.5 for n in names])
    ax.set_yticklabels(names)
    ax.set_ylim(0, len(names) + 0.75)
    ax.set_xlim(t0 / scale, (t1 + minw) / scale)
    clock = "virtual time" if trace.mode == "controlled" else "wall time"
    ax.set_xlabel(f"{clock} ({unit})" + ("; one scheduling step = 1 us"
                                         if trace.mode == "controlled" else ""))
    ax.grid(axis="x", color="#eeeeee")
    ax.set_axisbelow(True)
    if trace.title:
        ax.set_title(trace.title, fontsize=10, pad=20)
    handles = [Patch(color=COLOURS[k], label=_LEGEND[k]) for k in COLOURS]
    if frees:
        handles.append(Line2D([], [], color="black", linestyle=":", label="struct kvm freed"))
    if any(t0 <= t <= t1 for _, t, *_ in reports):
        handles.append(Patch(color="#e41a1c", label="report fired (dashed line, star)",
                             fill=False, linestyle="--"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
              frameon=False)
    if shown:
        fig.text(0.01, 0.01, "\n".join(shown), fontsize=8, family="monospace",
                 color="#b00000", va="bottom", ha="left")
    top = 1 - 0.5 / fig.get_figheight()
    bottom = (0.75 + 0.16 * len(shown)) / fig.get_figheight()
    fig.subplots_adjust(left=0.09, right=0.78, top=top, bottom=bottom)
    fig.savefig(path, format="png", metadata={"Software": None})
    return path


#: Allocations whose free a chart marks: the object a use-after-free is usually about.
NOTABLE = ("struct kvm",)


def frees_of_note(trace: Trace) -> list[tuple[int, str]]:
    """``(time_ns, name)`` of each free of a NOTABLE object (struct kvm)."""
    notable = {obj for _, _, kind, obj, arg in trace.events
               if kind == ev.ALLOC and arg in NOTABLE}
    return [(t, short_name(obj)) for (_, _, kind, obj, _), t in
            zip(trace.events, trace.times, strict=True) if kind == ev.FREE and obj in notable]


def reports_text(trace: Trace, limit: int = 8, width: int = 120) -> list[str]:
    """The numbered report lines printed under the chart (at most ``limit``)."""
    reps = trace.reports()
    out = []
    for i, (step, _t, th, kind, title) in enumerate(reps[:limit]):
        who = f" by {th}" if th else ""
        line = f"{i + 1}: {kind}{who} at step {step}: {title}"
        out.append(line if len(line) <= width else line[:width - 3] + "...")
    if len(reps) > limit:
        out.append(f"... and {len(reps) - limit} more reports")
    return out


def _band(kind: str) -> tuple[float, float]:
    """Vertical placement inside a lane (0..1): work at the bottom, waits in the middle,
    ``mmu_lock`` on top, so holding the lock while blocked shows as both."""
    if kind == "alive":
        return 0.42, 0.12
    if kind == "work":
        return 0.04, 0.27
    if kind.startswith("mmu_lock"):
        return 0.66, 0.30
    return 0.33, 0.31


__all__ = ["COLOURS", "Segment", "intervals", "lanes", "render_timeline", "reports_text",
           "window_ns"]
