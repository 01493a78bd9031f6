"""``tdpmmu stall``: the seed patch's headline, measured.

Kernel counterpart: "KVM: x86/mmu: Zap defunct roots via asynchronous
worker" (5.18) and "Stop zapping invalidated TDP MMU roots asynchronously"
(6.6).  For a series of guest sizes and the three zap generations, a vCPU
drops the last reference to a root populated with 4K SPTEs while other vCPUs
fault (rig.py, measure.py); the rows are summarised (summary.py), written as
tables, CSV and JSON (output.py) and plotted (plot.py).
"""

from .measure import Sample, Series, StallError, measure_once, run_series
from .rig import DeleteSample, DropSample, StallRig
from .sizes import SizeError, check_fits, format_size, parse_size, parse_sizes
from .summary import summarise

__all__ = [
    "DeleteSample", "DropSample", "Sample", "Series", "SizeError", "StallError", "StallRig",
    "check_fits", "format_size", "measure_once", "parse_size", "parse_sizes", "run_series",
    "summarise",
]
