"""Suite-wide fixtures: every test leaves no managed OS thread behind.

Idle carriers (OS threads kept for the next run, named ``ksync-carrier``
while they wait) are not managed threads; a carrier still running a managed
thread's body carries that thread's name and counts as a leak.
"""

from __future__ import annotations

import threading
import time

import pytest

_PROCESS_WIDE = ("ksync-carrier", "khungtaskd")


@pytest.fixture(autouse=True)
def no_leaked_threads():
    before = {t.ident for t in threading.enumerate()}
    yield
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        leaked = [t for t in threading.enumerate()
                  if t.ident not in before and t.is_alive() and not t.name.startswith("pytest")
                  and t.name not in _PROCESS_WIDE]
        if not leaked:
            return
        time.sleep(0.01)
    pytest.fail(f"managed threads leaked: {[t.name for t in leaked]}")
