"""The worker side of ``tdpmmu fuzz --cluster``: the Dask task that runs a batch.

``run_batch`` runs on a Dask worker process: it checks that the worker's
software is the manager's (``software_here``), prepares the process once
(quiet log, no Dask profiler, pinning) and runs the batch's seeds, sending
the campaign-log lines they produced home with their records.  The manager
side (connecting, dispatching, storing) is ``cluster.py``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .logsetup import LOGGER
from .runner import error_record, pin_worker
from .worker import run_one

#: Packages that must be the same on the manager and every worker.
_PACKAGES = ("python", "dask", "distributed", "cloudpickle", "msgpack", "tdpmmu")


class ClusterMismatch(Exception):
    """Raised on a worker whose software differs from the manager's (checked per batch)."""


def software_here() -> dict[str, str]:
    """What must match between manager and workers: package versions and tdpmmu's source."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": ".".join(platform.python_version_tuple()[:2])}
    for name in _PACKAGES[1:]:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    out["source"] = source_digest()
    return out


_DIGEST: list[str] = []


def source_digest() -> str:
    """SHA-256 of the model's Python source (ksync, workqueue, tdpmmu), computed once.

    Two checkouts with the same version number may still differ (a local
    patch), and their findings with them.
    """
    if not _DIGEST:
        import ksync
        import tdpmmu
        import workqueue

        h = hashlib.sha256()
        for pkg in (ksync, workqueue, tdpmmu):
            root = Path(pkg.__file__).parent
            for f in sorted(root.rglob("*.py")):
                h.update(str(f.relative_to(root.parent)).encode() + b"\0")
                h.update(f.read_bytes())
        _DIGEST.append(h.hexdigest()[:16])
    return _DIGEST[0]


def differences(mine: dict[str, str], theirs: dict[str, str]) -> list[str]:
    """``KEY X here, Y there`` for each entry of ``mine`` that ``theirs`` lacks or differs in."""
    return [f"{k} {mine[k]} here, {theirs.get(k, 'unknown')} there"
            for k in mine if theirs.get(k) != mine[k]]


_BATCH_LOCK = threading.Lock()
_prepared: list[bool] = []
_software: list[dict[str, str]] = []


class _Capture(logging.Handler):
    """Keeps the campaign-log records one batch's thread emits, to ship them home."""

    def __init__(self, thread: int) -> None:
        super().__init__(logging.INFO)
        self.thread = thread
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.lines.append({"created": record.created, "levelno": record.levelno,
                               "levelname": record.levelname, "msg": record.getMessage(),
                               "process": record.process})


def _prepare_worker(expect: dict[str, str], setup: Callable[[], None] | None,
                    local: int) -> None:
    """Check the software (every batch: a long-lived worker may serve another manager
    next); once per worker process, quiet the log, pin, run ``setup``.

    Context: called under ``_BATCH_LOCK``.
    """
    if not _software:
        _software.append(software_here())
    diff = differences(expect, _software[0])
    if diff:
        raise ClusterMismatch(f"worker {socket.gethostname()} pid {os.getpid()} runs other "
                              f"software than the campaign's manager: {'; '.join(diff)}")
    if _prepared:
        return
    lg = logging.getLogger(LOGGER)
    for h in list(lg.handlers):
        lg.removeHandler(h)
    lg.addHandler(logging.NullHandler())     # lines go home with the batch instead
    lg.propagate = False
    lg.setLevel(logging.INFO)
    from distributed import get_worker

    worker = get_worker()
    # Dask's profiler (every 10 ms) and event-loop tick (every 20 ms) wake a thread
    # that takes the GIL from the run, whose handoffs between managed threads then
    # wait for it (measured: 7.9 ms per run without them, 12.5 with, best of 6).
    for name in ("profile", "profile-cycle", "tick"):
        pc = worker.periodic_callbacks.pop(name, None)
        if pc is not None:
            worker.loop.add_callback(pc.stop)
    if local and (isinstance(worker.name, int) or str(worker.name).isdigit()):
        # A local:N worker is named by its index; N workers on N CPUs get one each.
        pin_worker(int(worker.name), local)
    if setup is not None:
        setup()
    _prepared.append(True)


def run_batch(spec_dict: dict[str, Any], seeds: list[int], expect: dict[str, str],
              setup: Callable[[], None] | None = None, local: int = 0) -> dict[str, Any]:
    """A Dask task: run ``seeds`` of the campaign, return their records and log lines.

    A seed whose run raises gets an ``error`` record, as in a ``--jobs``
    campaign; only a mismatched worker (``ClusterMismatch``) fails the task.
    """
    with _BATCH_LOCK:
        _prepare_worker(expect, setup, local)
        capture = _Capture(threading.get_ident())
        lg = logging.getLogger(LOGGER)
        lg.addHandler(capture)
        t0 = time.perf_counter()
        records = []
        try:
            for seed in seeds:
                try:
                    records.append(run_one(spec_dict, seed))
                except Exception as e:  # noqa: BLE001 - the harness failed on this seed
                    records.append(error_record(seed, e))
        finally:
            lg.removeHandler(capture)
        return {"records": records, "log": capture.lines, "host": socket.gethostname(),
                "seconds": time.perf_counter() - t0}
