"""What a stall series shows, in numbers: the seed's claims checked against the rows.

Kernel counterpart: the seed patch's changelog — a vCPU dropping a big
4K-populated root was blocked for the whole zap (time growing with the
SPTEs it maps), and only for queueing a work once the zap moved to a
worker.  ``summarise`` turns the rows of ``run_series`` into those
statements: the sync block time's linear fit against SPTEs, the async
block time's worst case and spread, and the sync/async ratio per size.
Nothing here fails a run: the command prints what it found.
"""

from __future__ import annotations

from typing import Any

#: The seed's "under 100 ms" for the async block time.
ASYNC_BLOCK_LIMIT_MS = 100.0
#: Async block times count as flat when the largest guest's is within this of the 1 GiB one's.
FLAT_FACTOR = 2.0
_GIB = 1 << 30


def linear_fit(xs: list[float], ys: list[float]) -> dict[str, float] | None:
    """Least-squares ``y = intercept + slope * x`` with its r²; None for fewer than 2 points."""
    n = len(xs)
    if n < 2 or len(set(xs)) < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    intercept = my - slope * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    r2 = 1.0 - ss_res / ss_tot if ss_tot else 1.0
    return {"slope": slope, "intercept": intercept, "r2": r2}


def _by_zap(rows: list[dict[str, Any]], zap: str) -> list[dict[str, Any]]:
    return sorted((r for r in rows if r["zap"] == zap), key=lambda r: r["memory_bytes"])


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The claims of BENCHMARKS.md, computed from ``rows`` (entries absent when not measurable)."""
    out: dict[str, Any] = {}
    sync, asy = _by_zap(rows, "sync"), _by_zap(rows, "async")
    if sync:
        fit = linear_fit([r["sptes"] for r in sync], [r["block_ms"] for r in sync])
        out["sync_ns_per_spte"] = {r["memory"]: round(r["block_ms"] * 1e6 / r["sptes"], 2)
                                   for r in sync}
        if fit is not None:
            out["sync_fit"] = {"ns_per_spte": round(fit["slope"] * 1e6, 3),
                               "intercept_ms": round(fit["intercept"], 3),
                               "r2": round(fit["r2"], 5)}
    if asy:
        worst = max(r["block_ms"] for r in asy)
        out["async_block_max_ms"] = worst
        out["async_block_under_100ms"] = worst < ASYNC_BLOCK_LIMIT_MS
        big = [r["block_ms"] for r in asy if r["memory_bytes"] >= _GIB]
        if len(big) >= 2 and min(big) > 0:
            spread = max(big) / min(big)
            out["async_block_spread_from_1g"] = round(spread, 3)
            # The claim is that the block time does not grow with the guest:
            # judge the largest size against the smallest.  Max/min also
            # counts the first row's warm-up (the smallest guest is measured
            # first), which at tens of microseconds can exceed 2x on its own.
            growth = big[-1] / big[0]
            out["async_block_growth_from_1g"] = round(growth, 3)
            out["async_block_flat"] = growth <= FLAT_FACTOR
    if sync and asy:
        a_by = {r["memory_bytes"]: r["block_ms"] for r in asy}
        out["sync_over_async"] = {r["memory"]: round(r["block_ms"] / a_by[r["memory_bytes"]], 1)
                                  for r in sync if a_by.get(r["memory_bytes"])}
    return out


def describe(summary: dict[str, Any]) -> list[str]:
    """The summary as short sentences for the end of the table."""
    lines = []
    fit = summary.get("sync_fit")
    if fit:
        lines.append(f"sync block time ~ {fit['intercept_ms']:.1f} ms + "
                     f"{fit['ns_per_spte']:.1f} ns x SPTEs (r2 {fit['r2']:.4f})")
    if "async_block_max_ms" in summary:
        verdict = "under" if summary["async_block_under_100ms"] else "NOT under"
        lines.append(f"async block time at most {summary['async_block_max_ms']:.3f} ms "
                     f"({verdict} {ASYNC_BLOCK_LIMIT_MS:.0f} ms)")
    if "async_block_growth_from_1g" in summary:
        flat = "flat" if summary["async_block_flat"] else "NOT flat"
        lines.append(f"async block time, largest guest / 1G: "
                     f"{summary['async_block_growth_from_1g']:.2f}x ({flat}, limit "
                     f"{FLAT_FACTOR:.0f}x; max/min {summary['async_block_spread_from_1g']:.2f}x)")
    ratios = summary.get("sync_over_async")
    if ratios:
        lines.append("sync/async block time: "
                     + ", ".join(f"{k} {v:,.0f}x" for k, v in ratios.items()))
    return lines
