"""Fuzz campaigns: many controlled runs of one scenario over worker processes.

``run_campaign(spec, ...)`` spreads the runs (one seed each) over a
``concurrent.futures`` executor, appends each result to a JSON-lines file the
moment it arrives, replays every finding once to check it reproduces, shrinks
one schedule per distinct finding, and returns a ``CampaignOutcome`` whose
summary names each finding with a copy-pasteable ``tdpmmu replay`` command.

Kernel counterpart: a syzkaller manager (the VMs are worker processes).
"""

from .runner import CampaignOutcome, run_campaign
from .spec import CampaignSpec
from .store import ResultStore

__all__ = ["CampaignOutcome", "CampaignSpec", "ResultStore", "run_campaign"]
