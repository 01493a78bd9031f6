"""Guest memory sizes for ``tdpmmu stall``: parsing, printing, and whether one fits here.

Kernel counterpart: none — this is the command line's side of the
measurement.  A size is guest memory mapped with 4K SPTEs, so a size of
``S`` bytes is ``S / 4096`` leaf SPTEs, and its page tables cost about
``PT_BYTES_PER_SPTE`` bytes each in the model (see BENCHMARKS.md, issue 4).
"""

from __future__ import annotations

import os
import re

PAGE_SIZE = 4096
#: Model page-table bytes per mapped 4K SPTE (8 for the SPTE, the rest page objects).
PT_BYTES_PER_SPTE = 8.8
#: A level-4 root maps 2**36 pages (256 TiB); the fault slot and a gap sit above the
#: measured slot, so the measured slot stays below half of that.
MAX_GUEST_BYTES = 1 << 47

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:I?B)?\s*$", re.IGNORECASE)


class SizeError(ValueError):
    """A guest size the stall measurement cannot use; the message is one line for the user."""


def parse_size(text: str) -> int:
    """``"64G"`` -> 68719476736.  Binary units K, M, G, T, P (``GiB``/``GB`` too); a bare
    number is bytes.  The result is a positive multiple of the 4 KiB page size."""
    m = _SIZE_RE.match(text)
    if m is None:
        raise SizeError(f"{text!r} is not a size: give a number with a unit, e.g. 1G, 512M, 1T")
    value = float(m.group(1)) * _UNITS[m.group(2).upper()]
    if value != int(value):
        raise SizeError(f"{text!r} is not a whole number of bytes")
    n = int(value)
    if n <= 0:
        raise SizeError(f"{text!r}: the guest needs some memory (a size > 0)")
    if n % PAGE_SIZE:
        raise SizeError(f"{text!r} is not a multiple of the 4 KiB page size")
    if n > MAX_GUEST_BYTES:
        raise SizeError(f"{text!r} is more than a level-4 root can hold beside the fault slot "
                        f"(at most {format_size(MAX_GUEST_BYTES)})")
    return n


def parse_sizes(text: str) -> list[int]:
    """A comma-separated list (``"1G,4G,1T"``), sorted, duplicates dropped."""
    parts = [p for p in text.split(",") if p.strip()]
    if not parts:
        raise SizeError(f"{text!r}: give at least one size, e.g. 1G,4G,64G")
    return sorted({parse_size(p) for p in parts})


def format_size(n: int) -> str:
    """1073741824 -> ``"1G"``; 1610612736 -> ``"1.5G"``; 8192 -> ``"8K"``."""
    for unit in ("P", "T", "G", "M", "K"):
        scale = _UNITS[unit]
        if n >= scale:
            value = n / scale
            return f"{value:g}{unit}" if value < 1000 else f"{value:.0f}{unit}"
    return f"{n}B"


def page_table_bytes(memory_bytes: int) -> int:
    """Model page-table memory for ``memory_bytes`` of 4K-mapped guest memory."""
    return int(memory_bytes // PAGE_SIZE * PT_BYTES_PER_SPTE)


def available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo, or None where there is no such file."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    if hasattr(os, "sysconf"):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return None


def check_fits(sizes: list[int], avail: int | None = None) -> None:
    """Refuse, before any work, a size whose page tables would not fit in free memory.

    One VM is alive at a time, so the largest size decides; 80% of what is
    available leaves room for the rest of the process.
    """
    avail = available_bytes() if avail is None else avail
    if avail is None or not sizes:
        return
    need = page_table_bytes(max(sizes))
    if need > 0.8 * avail:
        raise SizeError(f"{format_size(max(sizes))} of 4K-mapped guest memory needs about "
                        f"{format_size(need)} of page tables; this machine has "
                        f"{format_size(avail)} available")
