"""Teaching aids: readable traces, timelines, report explanations and labs.

``render_trace`` prints a column-per-thread text trace of a traced run;
``render_timeline`` draws its Gantt chart to a PNG; ``tdpmmu.teach.labs``
holds the labs of ``docs/labs/`` (``tdpmmu lab N``).  Importing the package
registers the TDP MMU state probes, so traced runs also record root
invalidation and zapped SPTEs.
"""

from __future__ import annotations

from . import probes
from .record import Trace, TraceUnavailable

probes.register()

__all__ = ["Trace", "TraceUnavailable"]
