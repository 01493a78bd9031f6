"""The campaign summary a person looks at: ``summary.html`` (and ``summary.png``) beside
``results.jsonl``.

Three questions, answered from the results file alone (so a summary can be
redrawn for any campaign, resumed or killed):

* what was found: runs per report kind, and each distinct finding with its
  replay command;
* how fast: executions per second over the campaign's active time (a gap of
  more than ``SESSION_GAP`` seconds between two results is a resume, and is
  cut out rather than drawn as a long stretch of zero);
* how soon: for each distinct finding, the schedules run before it first
  showed, counted in seed order (the same for any number of workers) and in
  the order results arrived (what the user waited for).

The HTML is self-contained (inline SVG, no script, no external file), so it
opens anywhere; the PNG is drawn with matplotlib's Agg canvas, as
``--timeline`` and ``tdpmmu stall`` draw theirs, and is skipped when
matplotlib cannot be imported.
"""

from __future__ import annotations

import html
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .findings import Finding, group_findings
from .spec import CampaignSpec
from .store import read_results

#: Seconds between two results beyond which the campaign was stopped and resumed.
SESSION_GAP = 10.0


@dataclass
class SummaryData:
    """What the summary shows, computed once for both the HTML and the PNG."""

    spec: CampaignSpec
    runs: int
    clean: int
    kinds: Counter
    findings: list[Finding]
    #: (active seconds, runs/s) per time bucket; empty when no run was time-stamped.
    rate: list[tuple[float, float]] = field(default_factory=list)
    #: (schedules run, distinct findings so far), in arrival order.
    discovery: list[tuple[int, int]] = field(default_factory=list)
    #: per finding: (schedules to it in seed order, in arrival order, active seconds or None).
    first: list[tuple[int, int, float | None]] = field(default_factory=list)


def summarise(out: Path, spec: CampaignSpec | None = None) -> SummaryData:
    """Read ``out/results.jsonl`` and work out the summary (``StoreError`` if unreadable).

    ``spec`` is the one in force (a resumed campaign's ``runs`` is the latest
    session's; the file's header keeps the first); default: the header's.
    """
    stored, records = read_results(Path(out) / "results.jsonl")
    spec = spec or stored
    runs = [r for r in records if r.get("type") == "run"]
    findings = group_findings(spec, records)
    kinds = Counter(r["reports"][0]["kind"] for r in runs if not r["clean"] and r["reports"])
    data = SummaryData(spec=spec, runs=len(runs), clean=sum(r["clean"] for r in runs),
                       kinds=kinds, findings=findings)
    active = _active_times(runs)
    data.rate = _rate_buckets(active)
    key_of = {}
    for f in findings:
        for s in f.seeds:
            key_of[s] = (f.reproducible, f.kind, f.title)
    seen: set[tuple[bool, str, str]] = set()
    for i, r in enumerate(runs, 1):
        k = key_of.get(r["seed"])
        if k is not None:
            seen.add(k)
        data.discovery.append((i, len(seen)))
    index_of = {r["seed"]: i for i, r in enumerate(runs)}
    for f in findings:
        # Seed order is what any rerun with any --jobs gives; arrival order is what
        # this campaign's user waited through.
        first_arrival = min(index_of[s] for s in f.seeds)
        at = active[first_arrival] if active else None
        data.first.append((f.seed - spec.seed + 1, first_arrival + 1, at))
    return data


def _active_times(runs: list[dict[str, Any]]) -> list[float]:
    """Seconds of active campaign time at each run's arrival (gaps over SESSION_GAP cut)."""
    if not runs or any("at" not in r for r in runs):
        return []
    out, t, last = [], 0.0, runs[0]["at"] - runs[0].get("seconds", 0.0)
    for r in runs:
        gap = r["at"] - last
        t += gap if 0 <= gap <= SESSION_GAP else 0.0
        last = r["at"]
        out.append(t)
    return out


def _rate_buckets(active: list[float], most: int = 24) -> list[tuple[float, float]]:
    """Runs per second in equal slices of active time (midpoint, rate).

    About ten runs a slice on average, at most ``most`` slices: fewer runs
    per slice and the line is mostly the noise of who finished when.
    """
    buckets = min(most, len(active) // 10)
    if buckets < 1 or active[-1] <= 0:
        return []
    width = active[-1] / buckets
    counts = [0] * buckets
    for t in active:
        counts[min(int(t / width), buckets - 1)] += 1
    return [((i + 0.5) * width, c / width) for i, c in enumerate(counts)]


def write_summary(out: Path, spec: CampaignSpec | None = None, *,
                  png: bool = True) -> list[Path]:
    """Write ``summary.html`` (and, with matplotlib, ``summary.png``) into ``out``.

    Returns the files written, the HTML first.  The PNG is optional: a
    missing matplotlib costs the picture, never the summary.
    """
    out = Path(out)
    data = summarise(out, spec)
    written = []
    png_path = out / "summary.png"
    if png:
        try:
            written.append(render_png(data, png_path))
        except ImportError:
            pass
    html_path = out / "summary.html"
    html_path.write_text(render_html(data, png_path.name if written else None),
                         encoding="utf-8")
    return [html_path, *written]


def summary_line(paths: list[Path]) -> str:
    """The last line a campaign prints: where its summary is."""
    return "summary: " + " and ".join(str(p) for p in paths)


# --- HTML -------------------------------------------------------------------------------

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222 }
h1 { font-size: 1.4em } h2 { font-size: 1.1em; margin-top: 1.6em }
table { border-collapse: collapse } td, th { padding: .25em .7em; text-align: left;
  border-bottom: 1px solid #ddd; vertical-align: top }
.bar { background: #c0392b; height: .9em; display: inline-block }
code { font-size: 12px; word-break: break-all } .muted { color: #777 }
"""


def render_html(data: SummaryData, png_name: str | None = None) -> str:
    """The summary page for ``data``; ``png_name`` embeds the PNG drawn beside it."""
    s, e = data.spec, html.escape
    title = f"tdpmmu campaign: {s.program()}"
    what = (f"strategy {s.strategy_spec()}, seeds {s.seed}..{s.seed + s.runs - 1}"
            + ("" if s.script else f", zap {s.zap}, bugs {', '.join(s.bugs) or 'none'}"))
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>{e(title)}</h1><p>{e(what)}<br>{data.runs} runs, {data.clean} clean, "
             f"{len(data.findings)} distinct finding(s)"
             + ("" if data.runs >= s.runs else f" <b>(incomplete: {data.runs} of {s.runs}; "
                                              "--resume continues)</b>")
             + f"<br><span class='muted'>written {e(time.strftime('%Y-%m-%d %H:%M:%S'))}"
               "</span></p>"]
    parts.append("<h2>Findings by kind</h2>" + _kinds_table(data))
    parts.append("<h2>Executions per second</h2>" + (
        _svg_chart(data.rate, "active seconds", "runs/s") if data.rate
        else "<p class='muted'>too few time-stamped runs to draw a rate</p>"))
    parts.append("<h2>Schedules to first finding</h2>" + _first_table(data))
    if data.discovery:
        parts.append(_svg_chart([(float(x), float(y)) for x, y in data.discovery],
                                "schedules run (arrival order)", "distinct findings",
                                step=True))
    if png_name:
        parts.append(f"<h2>Plot</h2><p><img src='{e(png_name)}' alt='campaign plot' "
                     "style='max-width:100%'></p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _kinds_table(data: SummaryData) -> str:
    if not data.kinds:
        return f"<p>none: all {data.runs} runs were clean</p>"
    top = max(data.kinds.values())
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{n}</td><td><span class='bar' "
        f"style='width:{max(2, round(12 * n / top))}em'></span></td></tr>"
        for k, n in data.kinds.most_common())
    return f"<table><tr><th>kind</th><th>runs</th><th></th></tr>{rows}</table>"


def _first_table(data: SummaryData) -> str:
    if not data.findings:
        return "<p>no finding</p>"
    rows = []
    for i, (f, (by_seed, by_arrival, at)) in enumerate(zip(data.findings, data.first,
                                                             strict=True), 1):
        flag = "" if f.reproducible else " <b>[does not replay]</b>"
        when = "" if at is None else f"{at:.1f}"
        rows.append(f"<tr><td>{i}</td><td>{html.escape(f.kind)}: {html.escape(f.title)}{flag}"
                    f"<br><code>{html.escape(f.replay_command)}</code></td>"
                    f"<td>{f.count}</td><td>{by_seed} (seed {f.seed})</td><td>{by_arrival}</td>"
                    f"<td>{when}</td></tr>")
    return ("<table><tr><th>#</th><th>finding and replay command</th><th>runs</th>"
            "<th>schedules to it, seed order</th><th>arrival order</th><th>active s</th>"
            "</tr>" + "".join(rows) + "</table>")


def _svg_chart(points: list[tuple[float, float]], xlabel: str, ylabel: str, *,
               step: bool = False, w: int = 640, h: int = 220) -> str:
    """A small line chart as inline SVG: axes from zero, the maxima written at the ends."""
    pad_l, pad_b, pad_t, pad_r = 56, 34, 10, 12
    xmax = max((x for x, _ in points), default=1.0) or 1.0
    ymax = max((y for _, y in points), default=1.0) or 1.0

    def xy(x: float, y: float) -> str:
        return (f"{pad_l + (w - pad_l - pad_r) * x / xmax:.1f},"
                f"{h - pad_b - (h - pad_t - pad_b) * y / ymax:.1f}")

    pts = []
    prev_y = 0.0
    for x, y in points:
        if step:
            pts.append(xy(x, prev_y))
        pts.append(xy(x, y))
        prev_y = y
    e = html.escape
    return (f"<svg width='{w}' height='{h}' xmlns='http://www.w3.org/2000/svg' "
            "font-size='11'>"
            f"<line x1='{pad_l}' y1='{h - pad_b}' x2='{w - pad_r}' y2='{h - pad_b}' "
            "stroke='#888'/>"
            f"<line x1='{pad_l}' y1='{pad_t}' x2='{pad_l}' y2='{h - pad_b}' stroke='#888'/>"
            f"<polyline fill='none' stroke='#2471a3' stroke-width='2' points='{' '.join(pts)}'/>"
            f"<text x='{pad_l - 4}' y='{pad_t + 8}' text-anchor='end'>{ymax:.3g}</text>"
            f"<text x='{pad_l - 4}' y='{h - pad_b}' text-anchor='end'>0</text>"
            f"<text x='{w - pad_r}' y='{h - pad_b + 14}' text-anchor='end'>{xmax:.4g}</text>"
            f"<text x='{(w + pad_l) / 2}' y='{h - 6}' text-anchor='middle'>{e(xlabel)}</text>"
            f"<text x='12' y='{(h - pad_b) / 2}' transform='rotate(-90 12 {(h - pad_b) / 2})' "
            f"text-anchor='middle'>{e(ylabel)}</text></svg>")


# --- PNG --------------------------------------------------------------------------------

def render_png(data: SummaryData, path: Path) -> Path:
    """Draw the three panels (kinds, runs/s, discovery) into the PNG ``path``.

    Raises ``ImportError`` without matplotlib (``write_summary`` then skips it).
    """
    # The object API on the Agg canvas, as the other plots: no pyplot state, no display.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(14, 4), dpi=90, layout="constrained")
    FigureCanvasAgg(fig)
    kinds_ax, rate_ax, disc_ax = fig.subplots(1, 3)
    fig.suptitle(f"{data.spec.program()} ({data.spec.strategy_spec()}): {data.runs} runs, "
                 f"{data.clean} clean, {len(data.findings)} distinct finding(s)")
    if data.kinds:
        names = [k for k, _ in data.kinds.most_common()][::-1]
        kinds_ax.barh(names, [data.kinds[k] for k in names], color="tab:red")
    else:
        kinds_ax.text(0.5, 0.5, "all runs clean", ha="center", va="center",
                      transform=kinds_ax.transAxes)
    kinds_ax.set_title("findings by kind (runs)")
    if data.rate:
        rate_ax.plot([x for x, _ in data.rate], [y for _, y in data.rate], color="tab:blue")
        rate_ax.set_ylim(bottom=0)
    rate_ax.set_title("executions per second")
    rate_ax.set_xlabel("active seconds")
    if data.discovery:
        disc_ax.step([x for x, _ in data.discovery], [y for _, y in data.discovery],
                     where="post", color="tab:green")
        for by_arrival in (a for _, a, _ in data.first if a):
            disc_ax.axvline(by_arrival, color="tab:gray", alpha=0.4, linestyle=":")
        disc_ax.set_ylim(0, max(1, len(data.findings)) * 1.1)
        disc_ax.yaxis.get_major_locator().set_params(integer=True)
    disc_ax.set_title("distinct findings vs schedules run")
    disc_ax.set_xlabel("schedules run (arrival order)")
    for ax in (rate_ax, disc_ax):
        ax.grid(True, alpha=0.3)
    fig.savefig(path)
    return path
