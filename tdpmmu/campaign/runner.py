"""The campaign manager: hand seeds to workers, store what comes back, sum it up.

Context: runs in the process that started the campaign; workers are the
executor's processes.  Only this process writes the results file.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ksync import affinity

from ..harness import estimate_steps
from .findings import Finding, group_findings
from .logsetup import LOGGER, setup_log
from .progress import Progress
from .spec import CampaignSpec
from .store import ResultStore, StoreError
from .worker import run_one, shrink_one

ExecutorFactory = Callable[[int, str | None], Executor]
#: Runs a campaign's seeds somewhere other than the executor (a Dask cluster,
#: ``cluster.py``): ``dispatch(spec, todo, store, progress, t0, time_limit)``
#: appends each record to ``store`` and returns the runs it finished.
SeedDispatch = Callable[[CampaignSpec, list[int], ResultStore, Progress | None, float,
                         float | None], int]


class CampaignError(Exception):
    """The campaign could not go on (results file unusable, a worker process died)."""


def _worker_init(log_path: str | None, started: Any = None, jobs: int = 0) -> None:
    # Ctrl-C is the manager's to handle: it stops handing out seeds and saves.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    setup_log(log_path)
    if started is not None:
        with started.get_lock():
            index = started.value
            started.value += 1
        pin_worker(index, jobs)


def pin_worker(index: int, jobs: int) -> None:
    """Give worker ``index`` of ``jobs`` a CPU of its own for its controlled runs (``KSYNC_PIN``).

    Controlled runs pin their threads to one CPU (ksync.affinity); left to
    choose, two workers may pick the same one.  With fewer workers than CPUs
    the choice is left to each run (``auto``: the CPU the OS put it on), so
    that two small campaigns on one machine do not both land on CPU 0.  A
    ``KSYNC_PIN`` the user set (``off``, or a CPU) is kept.
    """
    if os.environ.get(affinity.ENV) or not affinity.supported():
        return
    cpus = sorted(os.sched_getaffinity(0))
    if jobs < len(cpus):
        return
    os.environ[affinity.ENV] = str(cpus[index % len(cpus)])


def process_pool(jobs: int, log_path: str | None) -> Executor:
    """The default executor: ``jobs`` worker processes sharing the campaign log,
    each pinned to a CPU of its own when there are as many as CPUs (``pin_worker``)."""
    ctx = multiprocessing.get_context()
    return ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init,
                               initargs=(log_path, ctx.Value("i", 0), jobs))


@dataclass
class CampaignOutcome:
    """Totals over the whole results file (resumed runs included)."""

    spec: CampaignSpec
    out: Path
    runs: int
    clean: int
    session_runs: int
    session_seconds: float
    complete: bool
    findings: list[Finding] = field(default_factory=list)

    @property
    def executions_per_second(self) -> float:
        return self.session_runs / self.session_seconds if self.session_seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """The ``tdpmmu fuzz --json`` document (DESIGN.md)."""
        return {"runs": self.runs, "clean": self.clean,
                "executions_per_second": round(self.executions_per_second, 2),
                "findings": [f.to_json() for f in self.findings],
                "complete": self.complete, "results": str(self.out / "results.jsonl")}


def run_campaign(spec: CampaignSpec, out: Path, *, jobs: int = 1, resume: bool = False,
                 time_limit: float | None = None, minimise: bool = True,
                 progress: Progress | None = None,
                 executor_factory: ExecutorFactory = process_pool,
                 dispatch: SeedDispatch | None = None) -> CampaignOutcome:
    """Run (or continue) the campaign; results go to ``out/results.jsonl`` as they arrive.

    With ``dispatch`` the runs go there instead of to the executor, which then
    only shrinks the findings (on this machine, as without it).
    """
    log = logging.getLogger(LOGGER)
    out = Path(out)
    log_path = str(out / "campaign.log")
    store = ResultStore(out)
    try:
        if spec.strategy == "pct" and spec.steps is None and not (
                resume and store.path.exists()):
            spec.steps = _estimate_steps(spec)
        spec = store.open(spec, resume)
    except StoreError as e:
        raise CampaignError(str(e)) from None
    setup_log(log_path)
    done = store.done_seeds()
    todo = [s for s in range(spec.seed, spec.seed + spec.runs) if s not in done]
    log.info("campaign %s: %d runs to do (%d already done), %d jobs",
             spec.strategy_spec(), len(todo), len(done), jobs)
    if progress is not None:
        progress.total = len(todo)      # the bar shows this session's share
        progress.t0 = time.monotonic()
    t0 = time.monotonic()
    session = 0
    try:
        with executor_factory(jobs, log_path) as ex:
            if dispatch is None:
                session = _run_seeds(ex, spec, todo, jobs, store, progress, t0, time_limit)
            else:
                session = dispatch(spec, todo, store, progress, t0, time_limit)
            elapsed = time.monotonic() - t0
            if minimise:
                left = None if time_limit is None else max(2.0, time_limit - elapsed)
                _shrink_findings(ex, spec, store, left)
    finally:
        store.close()
    runs = [r for r in store.records if r.get("type") == "run"]
    seeds_done = {r["seed"] for r in runs}
    outcome = CampaignOutcome(
        spec=spec, out=out, runs=len(runs), clean=sum(1 for r in runs if r["clean"]),
        session_runs=session, session_seconds=elapsed, findings=group_findings(spec, store.records),
        complete=all(s in seeds_done for s in range(spec.seed, spec.seed + spec.runs)))
    log.info("campaign done: %d runs, %d clean, %d distinct findings, %.1f runs/s",
             outcome.runs, outcome.clean, len(outcome.findings), outcome.executions_per_second)
    return outcome


def _estimate_steps(spec: CampaignSpec) -> int:
    """PCT's k for the campaign's program, measured by one random-walk run."""
    if spec.script:
        from .script import estimate_script_steps
        return estimate_script_steps(spec)
    return estimate_steps(spec.scenario, zap=spec.zap, bugs=spec.bugs, params=spec.params,
                          checks=spec.checks, seed=spec.seed)


def _run_seeds(ex: Executor, spec: CampaignSpec, todo: list[int], jobs: int,
               store: ResultStore, progress: Progress | None, t0: float,
               time_limit: float | None) -> int:
    specd = spec.to_dict()
    pending = iter(todo)
    inflight: dict[Future, int] = {}
    finished = findings = 0
    exhausted = False
    try:
        while True:
            while not exhausted and len(inflight) < 2 * jobs:
                if time_limit is not None and time.monotonic() - t0 >= time_limit:
                    exhausted = True
                    break
                seed = next(pending, None)
                if seed is None:
                    exhausted = True
                    break
                inflight[ex.submit(run_one, specd, seed)] = seed
            if not inflight:
                break
            ready, _ = wait(inflight, timeout=0.25, return_when=FIRST_COMPLETED)
            for fut in ready:
                seed = inflight.pop(fut)
                rec = _record(fut, seed)
                store.append(rec)
                finished += 1
                findings += not rec["clean"]
            if progress is not None:
                progress.update(finished, findings)
    except BrokenProcessPool:
        raise CampaignError(f"a worker process died; {finished} results are saved in "
                            f"{store.path}; --resume continues") from None
    except BaseException:
        ex.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        if progress is not None:
            progress.close(finished, findings)
    return finished


def _record(fut: Future, seed: int) -> dict[str, Any]:
    """A worker's record; a worker that raised is a finding of kind ``error``."""
    try:
        return fut.result()
    except BrokenProcessPool:
        raise
    except Exception as e:  # noqa: BLE001 - the harness itself failed on this seed
        return error_record(seed, e)


def error_record(seed: int, e: BaseException) -> dict[str, Any]:
    """The record of a seed whose run raised ``e`` (the harness failed, not the model)."""
    text = f"{type(e).__name__}: {e}"
    return {"type": "run", "seed": seed, "clean": False, "steps": 0, "decisions": 0,
            "schedule": "", "reports": [{"kind": "error", "title": text, "text": text}],
            "reproducible": False, "divergence": "the run did not complete",
            "divergence_step": None}


def _shrink_findings(ex: Executor, spec: CampaignSpec, store: ResultStore,
                     time_limit: float | None) -> None:
    """Shrink one schedule per distinct reproducible finding not shrunk yet."""
    shrunk = {r["seed"] for r in store.records if r.get("type") == "minimised"}
    futs = []
    for f in group_findings(spec, store.records):
        if f.reproducible and f.schedule and f.seed not in shrunk:
            futs.append(ex.submit(shrink_one, spec.to_dict(), f.seed, f.schedule, f.kind,
                                  f.steps, 30.0 if time_limit is None else min(30.0, time_limit)))
    for fut in futs:
        try:
            store.append(fut.result())
        except BrokenProcessPool:
            raise CampaignError("a worker process died while shrinking; --resume "
                                "continues") from None
