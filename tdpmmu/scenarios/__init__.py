"""Scenarios: small programs over the model, modelled on KVM's selftests.

A scenario is a plain function that runs on the main thread of an entered
``ksync.Runtime``: it builds a ``Kvm``, starts vCPU threads with
``rt.spawn``, drives them, and destroys the VM.  It takes ``zap`` (one of
``ZAP_MODES``), ``bugs`` (catalogue names) and its own size parameters,
whose defaults keep a controlled run at tens of milliseconds.  Any
randomness comes from the runtime's seed, so a run is a pure function of
(scenario, parameters, seed, strategy).

Scripts import and parametrise them::

    from tdpmmu.scenarios import get_scenario
    with ksync.Runtime(mode="controlled", seed=7) as rt:
        get_scenario("root_reload_storm")(zap="sync", vcpus=3)
"""

from .registry import SCENARIOS, Scenario, UnknownScenario, get_scenario, scenario

__all__ = ["SCENARIOS", "Scenario", "UnknownScenario", "get_scenario", "scenario"]

# Importing the modules registers their scenarios, in the order `tdpmmu scenarios` lists them.
from . import (  # noqa: E402,F401,I001
    max_guest_memory, dirty_log, memslot_churn, teardown, reload_storm, mmu_notifier, mixed,
)
