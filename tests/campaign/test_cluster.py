"""Campaigns on a Dask cluster: the same findings as ``--jobs``, crash-safe, resumable.

A ``local:2`` cluster is shared by the tests of this module (starting one
costs about two seconds); toy scenarios reach its workers through
``worker_setup``.  The scheduler-loss test starts its own scheduler and
worker processes, as a user's machines would run them.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("distributed", reason="the [cluster] extra (Dask distributed) is not "
                                          "installed: pip install -e '.[cluster]'")

from tdpmmu.campaign import CampaignSpec, run_campaign  # noqa: E402
from tdpmmu.campaign import cluster as cl  # noqa: E402
from tdpmmu.campaign.progress import Progress  # noqa: E402

from ..cli.util import exit_code  # noqa: E402
from .toyscenario import register, toy_scenarios  # noqa: E402
from .util import records  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
#: A campaign with a few distinct outcomes and runs of a few ms (spin), so that
#: batches are in flight long enough to be killed.
SPEC = dict(scenario="toy_lost_update", runs=160, seed=11, params={"spin": 40, "threads": 3})
#: What a run's record must hold alike wherever it ran (not its timing).
SAME = ("seed", "clean", "steps", "decisions", "schedule", "reports", "reproducible",
        "divergence", "divergence_step")


def _runs(out: Path) -> dict[int, dict]:
    return {r["seed"]: {k: r.get(k) for k in SAME} for r in records(out) if r["type"] == "run"}


def _findings(outcome) -> list[tuple]:
    return [(f.kind, f.title, f.seed, f.schedule, f.count, tuple(f.seeds)) for f in
            outcome.findings]


@pytest.fixture(scope="module", autouse=True)
def patient_watchdog() -> Iterator[None]:
    """The hung-task watchdog waits a minute here: on a loaded machine a run (pinned
    to one CPU) may pass 5 s without a scheduling point, and its report would make
    one campaign differ from another for a reason that is not under test.  Worker
    processes and the --jobs pool inherit the variable."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KSYNC_HUNG_TIMEOUT", "60")
        yield


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Iterator[tuple]:
    """SPEC run by ``--jobs 2``, before any cluster thread exists in this process."""
    out = tmp_path_factory.mktemp("jobs")
    with toy_scenarios():
        o = run_campaign(CampaignSpec(**SPEC), out, jobs=2)
        yield o, _runs(out)


@pytest.fixture(scope="module")
def local2(reference, tmp_path_factory) -> Iterator[cl.ClusterDispatch]:
    """A ``local:2`` cluster for the module.  A first small campaign starts Dask's
    process-wide thread pools (callbacks, offload) here, before any test, so the
    suite's leaked-thread check sees them as this process's own."""
    with toy_scenarios(), cl.open_cluster(cl.parse_target("local:2"), timeout=30,
                                          worker_setup=register) as d:
        run_campaign(CampaignSpec(**{**SPEC, "runs": 6}), tmp_path_factory.mktemp("warm"),
                     jobs=2, dispatch=d, minimise=False)
        yield d


def _worker_pids(d: cl.ClusterDispatch) -> dict[str, int]:
    return d.client.run(os.getpid)


@pytest.mark.timeout(60)
def test_a_cluster_campaign_finds_what_a_jobs_campaign_finds(toys, reference, local2,
                                                            tmp_path):
    want, want_runs = reference
    assert want.findings and want.clean < want.runs, "the reference finds something"
    o = run_campaign(CampaignSpec(**SPEC), tmp_path, jobs=2, dispatch=local2)
    assert o.complete and o.runs == SPEC["runs"]
    assert _runs(tmp_path) == want_runs, "every run's record, schedule and reports"
    assert _findings(o) == _findings(want)
    assert [f.minimised for f in o.findings] == [f.minimised for f in want.findings]
    assert local2.batches < SPEC["runs"], "seeds go out in batches, not one task each"


@pytest.mark.timeout(60)
def test_progress_line_and_campaign_log_cover_the_remote_workers(toys, local2, tmp_path):
    stream = io.StringIO()
    o = run_campaign(CampaignSpec(**SPEC), tmp_path, jobs=2, dispatch=local2,
                     progress=Progress(0, stream=stream))
    lines = stream.getvalue().splitlines()
    n_found = o.runs - o.clean
    assert lines[-1].split()[1] == f"{SPEC['runs']}/{SPEC['runs']}"
    assert f"findings {n_found}" in lines[-1]
    log = (tmp_path / "campaign.log").read_text().splitlines()
    pids = {int(ln.split()[2]) for ln in log if "INFO seed " in ln and "lost update" in ln}
    assert len([ln for ln in log if "INFO seed " in ln and "lost update" in ln]) == n_found
    assert pids & set(_worker_pids(local2).values()), "workers' lines carry their pids"
    assert os.getpid() not in pids


class _KillAWorker(Progress):
    """Kills (SIGKILL) a worker that has a batch in progress, once, as results come in."""

    def __init__(self, d: cl.ClusterDispatch) -> None:
        super().__init__(0, enabled=False)
        self.d = d
        self.killed: tuple[int, list] | None = None

    def update(self, done: int, findings: int, force: bool = False) -> None:
        if self.killed is not None or done < 20:
            return
        busy = {w: keys for w, keys in self.d.client.processing().items() if keys}
        if not busy:
            return
        w, keys = next(iter(busy.items()))
        pid = self.d.client.run(os.getpid, workers=[w])[w]
        os.kill(pid, signal.SIGKILL)
        self.killed = (pid, list(keys))


@pytest.mark.timeout(180)       # 80 s seen at load 20 (a worker restart imports the model)
def test_a_worker_killed_mid_campaign_loses_no_result_and_its_seeds_run_elsewhere(
        toys, reference, local2, tmp_path):
    want, want_runs = reference
    # A cluster of its own: the restarted worker's threads end with it, in this test.
    with cl.open_cluster(cl.parse_target("local:2"), timeout=30, worker_setup=register) as d:
        killer = _KillAWorker(d)
        o = run_campaign(CampaignSpec(**SPEC), tmp_path, jobs=2, dispatch=d, progress=killer)
        assert killer.killed is not None, "a worker was killed with batches in progress"
        assert killer.killed[0] not in _worker_pids(d).values(), "the nanny restarted it"
    seeds = [r["seed"] for r in records(tmp_path) if r["type"] == "run"]
    assert sorted(seeds) == list(range(SPEC["seed"], SPEC["seed"] + SPEC["runs"])), \
        "every seed stored exactly once"
    assert o.complete and _runs(tmp_path) == want_runs
    assert _findings(o) == _findings(want)


@pytest.mark.timeout(90)
def test_a_run_that_kills_every_worker_it_touches_stops_the_campaign_with_one_line(
        toys, local2, tmp_path):
    with cl.open_cluster(cl.parse_target("local:1"), timeout=30, worker_setup=register) as d:
        with pytest.raises(cl.CampaignError, match=r"seeds \d+\.\.\d+ killed every worker "
                                                   r"that ran them .*--resume continues"):
            run_campaign(CampaignSpec("toy_crash", runs=3), tmp_path, jobs=1, dispatch=d)


_DRIVER = """\
import sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from tests.campaign.toyscenario import register
register()
from tdpmmu.campaign import CampaignSpec, run_campaign
from tdpmmu.campaign import cluster
spec = CampaignSpec(**{spec})
with cluster.open_cluster(cluster.parse_target("local:2"), timeout=20,
                          worker_setup=register) as d:
    run_campaign(spec, Path(sys.argv[2]), jobs=2, dispatch=d, minimise=False)
"""


@pytest.mark.timeout(90)
def test_the_client_killed_midway_then_resumed_runs_no_seed_twice(toys, reference, local2,
                                                                  tmp_path):
    want, want_runs = reference
    out = tmp_path / "c"
    spec = {**SPEC, "runs": 400}
    proc = subprocess.Popen([sys.executable, "-c", _DRIVER.format(spec=spec), str(ROOT),
                             str(out)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            if (out / "results.jsonl").exists() and sum(
                    r["type"] == "run" for r in records(out)) >= 30:
                break
            assert proc.poll() is None, "the campaign ended before it could be killed"
            time.sleep(0.02)
        # The whole group: the client, its in-process scheduler and the worker processes.
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    before = _runs(out)
    assert 30 <= len(before) < spec["runs"]

    o = run_campaign(CampaignSpec(**spec), out, jobs=2, resume=True, dispatch=local2)
    seeds = [r["seed"] for r in records(out) if r["type"] == "run"]
    assert sorted(seeds) == list(range(spec["seed"], spec["seed"] + spec["runs"])), \
        "every seed exactly once"
    assert o.complete and o.session_runs == spec["runs"] - len(before)
    after = _runs(out)
    assert all(after[s] == r for s, r in before.items()), "finished results kept as they were"
    assert all(after[s] == r for s, r in want_runs.items()), "the same runs as --jobs"
    assert [(f.kind, f.title, f.seed) for f in o.findings] == \
        [(f.kind, f.title, f.seed) for f in want.findings]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(150)       # the module's cluster may be set up in this test
def test_a_scheduler_that_goes_away_is_one_line_exit_two_and_keeps_results(local2, tmp_path):
    """A real scheduler and worker (``dask scheduler``, ``dask worker``) and the command line.

    (``local2`` only for Dask's process-wide threads, which the client here starts.)
    """
    import distributed

    address = f"tcp://127.0.0.1:{_free_port()}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # If pytest-timeout ends this process, the scheduler stops when idle (--idle-timeout)
    # and the worker when its scheduler has gone (--death-timeout).
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env,
             "start_new_session": True}
    sched = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler",
                              "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                              "--no-dashboard", "--idle-timeout", "120"], **quiet)
    worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address,
                               "--nthreads", "1", "--no-dashboard", "--death-timeout", "20"],
                              **quiet)
    out = tmp_path / "c"
    fuzz = None
    try:
        # The worker first: on a loaded machine it may take longer than --cluster-timeout.
        with distributed.Client(address, timeout=30, set_as_default=False) as c:
            c.wait_for_workers(1, timeout=30)
        fuzz = subprocess.Popen([sys.executable, "-m", "tdpmmu", "fuzz", "--scenario",
                                 "memslot_churn", "--runs", "100000", "--cluster", address,
                                 "--cluster-timeout", "3", "--out", str(out), "-q"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            if (out / "results.jsonl").exists() and sum(
                    r["type"] == "run" for r in records(out)) >= 20:
                break
            assert fuzz.poll() is None, fuzz.communicate()
            time.sleep(0.05)
        sched.kill()
        t0 = time.monotonic()
        _, err = fuzz.communicate(timeout=30)
        waited = time.monotonic() - t0
    finally:
        for p in (fuzz, worker, sched):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    assert fuzz.returncode == 2, err
    assert err.count("\n") == 1 and "lost the Dask scheduler at " + address in err, err
    assert "--resume continues" in err
    assert waited < 20, "bounded by --cluster-timeout, not a hang"
    kept = [r for r in records(out) if r["type"] == "run"]
    assert len(kept) >= 20, "what finished is kept"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("listener, needle", [
    ("closed", "no Dask scheduler at tcp://127.0.0.1:{port} (ConnectionRefusedError"),
    ("silent", "nothing at tcp://127.0.0.1:{port} spoke Dask within 1 s")])
def test_an_address_without_a_scheduler_is_one_line_exit_two_in_bounded_time(
        tmp_path, capsys, listener, needle):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        if listener == "silent":
            s.listen()          # accepts connections (the kernel does) and never answers
        port = s.getsockname()[1]
        if listener == "closed":
            s.close()
        t0 = time.monotonic()
        argv = ["fuzz", "--scenario", "memslot_churn", "--runs", "3", "--cluster",
                f"127.0.0.1:{port}", "--cluster-timeout", "1", "--out", str(tmp_path / "c"),
                "-q"]
        assert exit_code(argv) == 2
        waited = time.monotonic() - t0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle.format(port=port) in err, err
    assert waited < 5


@pytest.mark.timeout(60)
def test_a_version_mismatch_is_one_line_naming_both_versions(local2, tmp_path, capsys,
                                                             monkeypatch):
    real = cl.software_here

    def other_tdpmmu() -> dict[str, str]:
        return {**real(), "tdpmmu": "0.0.1"}

    monkeypatch.setattr(cl, "software_here", other_tdpmmu)
    argv = ["fuzz", "--scenario", "memslot_churn", "--runs", "3", "--cluster", "local:1",
            "--out", str(tmp_path / "c"), "-q"]
    assert exit_code(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "version mismatch between this process and the worker tcp://" in err
    assert "tdpmmu 0.0.1 here, " in err and " there" in err
    assert not (tmp_path / "c" / "results.jsonl").exists()
