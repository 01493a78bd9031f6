"""Cost of tracing, and of rendering a trace and a timeline (issue 9).

Run: ``python benchmarks/bench_trace.py [--repeat N]``.

For one seeded controlled run of ``root_reload_storm`` (3 vCPUs) and of
lab 3's memslot delete, with every checker on:

* CPU time of the run without a trace and with ``trace=True`` (the recorder
  plus the TDP MMU state probes that ``tdpmmu.teach`` registers), and the
  events recorded;
* CPU time to summarise and render the column text, and to draw the PNG.

Figures go to BENCHMARKS.md, section "Teaching: traces and timelines (issue 9)".
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import tdpmmu.teach  # noqa: F401 - registers the state probes
from tdpmmu.harness import run_scenario
from tdpmmu.teach import Trace
from tdpmmu.teach.lab_programs import run_program, shared_root_then_memslot_delete
from tdpmmu.teach.timeline import render_timeline
from tdpmmu.teach.trace import render_trace


def cpu(fn, repeat: int) -> tuple[float, object]:
    """Median process CPU seconds of ``fn()`` over ``repeat`` calls, and its last result."""
    times, res = [], None
    for _ in range(repeat):
        t0 = time.process_time()
        res = fn()
        times.append(time.process_time() - t0)
    return statistics.median(times), res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    n = ap.parse_args().repeat
    storm = {"vcpus": 3, "pages": 32, "reloads": 3}
    plain, _ = cpu(lambda: run_scenario("root_reload_storm", seed=1, params=storm), n)
    traced, res = cpu(lambda: run_scenario("root_reload_storm", seed=1, params=storm,
                                           trace=True, keep_runtime=True), n)
    print(f"root_reload_storm run: {plain * 1e3:.0f} ms untraced, {traced * 1e3:.0f} ms traced "
          f"(x{traced / plain:.2f}), {len(res.trace)} events, {res.steps} steps")
    lab, _ = cpu(lambda: run_program("bench", shared_root_then_memslot_delete, seed=1,
                                     pages=16, vcpus=2), n)
    print(f"lab 3 program (traced): {lab * 1e3:.0f} ms")
    tr = Trace.from_result(res)
    text_s, text = cpu(lambda: render_trace(tr), n)
    print(f"render_trace: {text_s * 1e3:.1f} ms for {len(text.splitlines())} lines")
    with tempfile.TemporaryDirectory() as d:
        render_timeline(tr, Path(d) / "warm.png")   # the first call imports matplotlib
        png_s, _ = cpu(lambda: render_timeline(tr, Path(d) / "t.png"), n)
    print(f"render_timeline: {png_s * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
