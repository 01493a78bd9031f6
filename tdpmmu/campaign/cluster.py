"""Campaigns on a Dask distributed cluster: ``tdpmmu fuzz --cluster ADDRESS|local:N``.

The process that starts the campaign stays its manager, as with ``--jobs``:
it alone writes the results file, draws the progress line, writes the
campaign log and shrinks the findings (in its own process pool).  Only the
runs go to the cluster, as Dask tasks of ``run_batch`` (cluster_worker.py): a batch of seeds in,
their records and the log lines they produced out.

Batching: a run costs 5-10 ms and a Dask task a few ms of scheduler and
network time; with one task per seed a ``local:2`` campaign ran at a third
of its batched rate (BENCHMARKS.md).  A batch is sized to last about
``BATCH_SECONDS`` (measured on the batches already back) and shrinks near
the end, so that the workers finish together; two batches per worker are in
flight, so a worker never waits for the scheduler between them.

Crash safety: a batch's records are appended to the results file only when
the batch comes back, so a worker killed mid-batch loses that batch alone
(at most ``BATCH_SECONDS`` of work) and the scheduler runs it again on
another worker; none of its seeds has a record yet, so none is stored twice.
A killed manager loses the batches in flight and ``--resume`` runs them.

Determinism: a run is a pure function of (scenario, seed, strategy), so the
same spec gives the same records on any worker; the connect check refuses
workers whose Python, Dask or tdpmmu (version and source) differ from the
manager's, since they could give other findings.  One batch at a time runs
in a worker process (``_BATCH_LOCK``): threads of one process share the GIL,
so more would not be faster, and the capacity counted is one slot per worker.

``distributed`` is imported only when a cluster is opened, so that this
module (``parse_target``) loads without the ``[cluster]`` extra.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .cluster_worker import ClusterMismatch, differences, run_batch, software_here, source_digest
from .logsetup import LOGGER
from .progress import Progress
from .runner import CampaignError
from .spec import CampaignSpec
from .store import ResultStore

#: Wall time a batch of seeds should take on a worker.
BATCH_SECONDS = 0.5
#: The port ``dask scheduler`` listens on unless told otherwise.
DEFAULT_PORT = 8786
#: Most workers ``local:N`` starts (more is a typo, not a machine).
MAX_LOCAL_WORKERS = 256
_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")
_INSTALL = "pip install 'tdpmmu[cluster]' (or pip install -e '.[cluster]' in a checkout)"

log = logging.getLogger(LOGGER)


class ClusterError(CampaignError):
    """The cluster cannot be used: bad address, no scheduler, other versions, no extra."""


@dataclass(frozen=True)
class ClusterTarget:
    """Where a campaign's runs go: a scheduler ``address``, or ``local`` workers here."""

    text: str
    address: str | None = None
    local: int = 0


def parse_target(text: str) -> ClusterTarget:
    """Check ``--cluster``'s value: ``local:N`` or ``[scheme://]host[:port]``."""
    if text.startswith("local:") or text == "local":
        n = text.partition(":")[2]
        if not n.isdigit() or not 1 <= int(n) <= MAX_LOCAL_WORKERS:
            raise ClusterError(f"--cluster {text}: local:N takes a number of workers "
                               f"from 1 to {MAX_LOCAL_WORKERS}")
        return ClusterTarget(text, local=int(n))
    scheme, sep, _ = text.partition("://")
    url = text if sep else f"tcp://{text}"
    scheme = scheme if sep else "tcp"
    if scheme not in _SCHEMES:
        raise ClusterError(f"--cluster {text}: unknown protocol {scheme!r} (a Dask scheduler "
                           f"address is tcp://HOST:PORT, or local:N for workers here)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ClusterError(f"--cluster {text}: not a scheduler address ({e})") from None
    if not parts.hostname or parts.path or parts.query or parts.fragment:
        raise ClusterError(f"--cluster {text}: not a scheduler address (expected "
                           f"{scheme}://HOST:PORT)")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return ClusterTarget(text, address=f"{scheme}://{host}:{port or DEFAULT_PORT}")


def _why(e: BaseException, limit: int = 160) -> str:
    """``e`` on one short line (Dask's messages run to several)."""
    text = " ".join(str(e).split())
    text = text if len(text) <= limit else text[:limit - 3] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


# --- on the manager --------------------------------------------------------

def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as e:
        raise ClusterError(f"--cluster needs Dask distributed, which is not installed "
                           f"({e}): {_INSTALL}") from None
    return distributed


@contextlib.contextmanager
def open_cluster(target: ClusterTarget, *, timeout: float = 10.0,
                 worker_setup: Callable[[], None] | None = None) -> Iterator[ClusterDispatch]:
    """Connect to (or start) the cluster and yield the campaign's ``dispatch``.

    Every wait is bounded by ``timeout`` seconds: an address nobody answers,
    a scheduler without workers, or a cluster that will not close is a
    ``ClusterError``, never a hang.  ``worker_setup`` runs once in each
    worker process before its first batch (tests register toy scenarios).
    """
    distributed = _import_distributed()
    cluster = client = None
    with _dask_logs_to_campaign_log():
        try:
            if target.local:
                cluster = _start_local(distributed, target, timeout)
                address = cluster.scheduler_address
            else:
                address = target.address
            client = _connect(distributed, address, target, timeout)
            try:
                client.wait_for_workers(1, timeout=timeout)
            except (TimeoutError, OSError):
                raise ClusterError(f"the Dask scheduler at {address} has no workers after "
                                   f"{timeout:g} s (start some: dask worker {address} "
                                   f"--nthreads 1)") from None
            expect = _check_versions(client, address)
            yield ClusterDispatch(client, target, address, expect, worker_setup, timeout)
        finally:
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close(timeout=timeout)
            if cluster is not None:
                with contextlib.suppress(Exception):
                    cluster.close(timeout=timeout)


class _ToCampaignLog(logging.Handler):
    """Hands Dask's warnings to the campaign log while a campaign runs (``active``);
    outside one (connecting, closing) they are dropped: what matters there is said
    by a ``ClusterError``."""

    active = False

    def emit(self, record: logging.LogRecord) -> None:
        if _ToCampaignLog.active:
            log.handle(record)


@contextlib.contextmanager
def _dask_logs_to_campaign_log() -> Iterator[None]:
    """Dask logs a lost connection or a dying worker on stderr, many lines each; the
    user gets one line from this module about the same event, and Dask's own words
    go to the campaign log, where the rest of the story is."""
    # Dask's logging config gives several of its loggers a stderr handler of their own.
    names = ["distributed"] + [n for n in logging.root.manager.loggerDict
                               if n.startswith("distributed.")]
    loggers = [lg for lg in map(logging.getLogger, names) if lg.handlers or lg.name == names[0]]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.handlers, lg.propagate = [_ToCampaignLog(logging.WARNING)], False
        lg.setLevel(max(lg.level, logging.WARNING))
    try:
        yield
    finally:
        for lg, handlers, level, propagate in saved:
            lg.handlers, lg.propagate = handlers, propagate
            lg.setLevel(level)


def _start_local(distributed: Any, target: ClusterTarget, timeout: float) -> Any:
    try:
        return distributed.LocalCluster(
            n_workers=target.local, threads_per_worker=1, processes=True,
            dashboard_address=None, worker_dashboard_address=None,
            silence_logs=logging.ERROR, host="127.0.0.1",
            # The scheduler serves HTTP (health checks) even without a dashboard; on
            # any free port, not 8787, which another cluster may hold.
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
    except Exception as e:  # noqa: BLE001 - any failure to start is one line for the user
        raise ClusterError(f"--cluster {target.text}: could not start {target.local} local "
                           f"Dask workers ({_why(e)})") from None


def _probe(address: str, target: ClusterTarget, timeout: float) -> None:
    """Check within ``timeout`` that a Dask server listens at a ``tcp://`` address.

    ``Client(timeout=)`` bounds the TCP connect only: a peer that accepts and
    never answers (an HTTP server, a stuck process) would hang its handshake.
    A Dask server speaks first (its half of the handshake), so one byte read
    in time tells; other protocols (TLS speaks only after the client) are
    left to Dask.
    """
    if not address.startswith("tcp://"):
        return
    parts = urlsplit(address)
    where = f"--cluster {target.text}: "
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as s:
            s.settimeout(timeout)
            first = s.recv(1)
    except TimeoutError:
        raise ClusterError(f"{where}nothing at {address} spoke Dask within {timeout:g} s "
                           f"(no answer, or a server that is not a Dask scheduler)") from None
    except OSError as e:
        raise ClusterError(f"{where}no Dask scheduler at {address} ({_why(e)})") from None
    if not first:
        raise ClusterError(f"{where}{address} closed the connection at once: not a Dask "
                           f"scheduler")


def _connect(distributed: Any, address: str, target: ClusterTarget, timeout: float) -> Any:
    _probe(address, target, timeout)
    try:
        return distributed.Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as e:
        raise ClusterError(f"--cluster {target.text}: no Dask scheduler answered at {address} "
                           f"within {timeout:g} s ({_why(e)})") from None
    except Exception as e:  # noqa: BLE001 - a handshake that fails (not a scheduler, TLS)
        raise ClusterError(f"--cluster {target.text}: could not talk to a Dask scheduler at "
                           f"{address} ({_why(e)})") from None


def _check_versions(client: Any, address: str) -> dict[str, str]:
    """Refuse a scheduler or worker whose software differs from this process's."""
    mine = software_here()
    try:
        got = client.get_versions(packages=["tdpmmu"])
        sources = client.run(source_digest)
    except Exception as e:  # noqa: BLE001 - a worker that cannot even answer is a mismatch too
        raise ClusterError(f"could not ask the cluster at {address} for its versions "
                           f"({_why(e)})") from None
    peers = {"scheduler": got["scheduler"]}
    peers.update((f"worker {w}", v) for w, v in got["workers"].items())
    for who, info in peers.items():
        theirs = {k: str(v) for k, v in info.get("packages", {}).items()}
        theirs["python"] = ".".join(theirs.get("python", "").split(".")[:2])
        if who == "scheduler":
            # The scheduler only routes tasks: its Python and Dask must match, not the model.
            check = {k: mine[k] for k in ("python", "dask", "distributed")}
        else:
            theirs["source"] = sources.get(who.removeprefix("worker "), "unknown")
            check = mine
        diff = differences(check, theirs)
        if diff:
            raise ClusterError(f"version mismatch between this process and the {who} at "
                               f"{address}: {'; '.join(diff)}")
    return mine


class ClusterDispatch:
    """The ``dispatch`` of ``run_campaign`` for one open cluster.

    Context: called in the manager's thread; Dask's client runs its own
    event-loop thread.  Each call hands out the seeds of one campaign.
    """

    def __init__(self, client: Any, target: ClusterTarget, address: str,
                 expect: dict[str, str], setup: Callable[[], None] | None,
                 timeout: float) -> None:
        self.client = client
        self.target = target
        self.address = address
        self.expect = expect
        self.setup = setup
        self.timeout = timeout
        #: Wall seconds per run, from the batches back so far (None before the first).
        self.per_run: float | None = None
        self.batches = 0

    @property
    def workers(self) -> int:
        """Worker processes now in the cluster (one batch slot each), 0 if none or unknown."""
        if self.client.status != "running":
            return 0
        try:
            # Bounded: a scheduler that stopped answering must not stop the loop here.
            return len(self.client.nthreads(callback_timeout=self.timeout))
        except Exception:  # noqa: BLE001 - a scheduler gone is found by the seed loop
            return 0

    def batch_size(self, remaining: int, slots: int, left: float | None) -> int:
        """Seeds for the next batch: ``BATCH_SECONDS`` worth, fewer near the end."""
        if self.per_run is None:
            return 1        # the first batches measure a run
        n = int(BATCH_SECONDS / max(self.per_run, 1e-6))
        n = min(n, math.ceil(remaining / (2 * slots)))
        if left is not None:
            n = min(n, int(left / max(self.per_run, 1e-6)))
        return max(1, n)

    def __call__(self, spec: CampaignSpec, todo: list[int], store: ResultStore,
                 progress: Progress | None, t0: float, time_limit: float | None) -> int:
        specd = spec.to_dict()
        # Dask calls back from its event-loop thread as each batch ends.
        ended: queue.SimpleQueue[Any] = queue.SimpleQueue()
        pending = list(reversed(todo))          # pop() from the end hands out seeds in order
        inflight: dict[Any, list[int]] = {}
        finished = findings = 0
        lost_since: float | None = None
        slots, counted = max(1, self.workers), time.monotonic()
        self.per_run = None                     # another campaign's runs may differ
        log.info("cluster %s: %d workers at %s", self.target.text, slots, self.address)
        _ToCampaignLog.active = True
        try:
            while True:
                left = None if time_limit is None else time_limit - (time.monotonic() - t0)
                while pending and len(inflight) < 2 * slots and (left is None or left > 0):
                    n = self.batch_size(len(pending), slots, left)
                    seeds = [pending.pop() for _ in range(min(n, len(pending)))]
                    fut = self.client.submit(run_batch, specd, seeds, self.expect, self.setup,
                                             self.target.local, pure=False,
                                             key=f"tdpmmu-seeds-{seeds[0]}+{len(seeds)}-"
                                                 f"{os.urandom(4).hex()}")
                    inflight[fut] = seeds
                    fut.add_done_callback(ended.put)
                if not inflight:
                    break
                done = []
                with contextlib.suppress(queue.Empty):
                    done.append(ended.get(timeout=0.25))
                    while True:
                        done.append(ended.get_nowait())
                for fut in done:
                    seeds = inflight.pop(fut)
                    for rec in self._take(fut, seeds, store, finished):
                        store.append(rec)
                        finished += 1
                        findings += not rec["clean"]
                if time.monotonic() - counted > 1.0:
                    # Workers that join mid-campaign get batches too.
                    now_workers, counted = self.workers, time.monotonic()
                    slots = max(1, now_workers)
                    lost_since = self._check_cluster(now_workers, lost_since, finished, store)
                if progress is not None:
                    progress.update(finished, findings)
        except BaseException:
            with contextlib.suppress(Exception):
                self.client.cancel(list(inflight), force=True)
            raise
        finally:
            _ToCampaignLog.active = False
            if progress is not None:
                progress.close(finished, findings)
        return finished

    def _take(self, fut: Any, seeds: list[int], store: ResultStore,
              finished: int) -> list[dict[str, Any]]:
        """The records of a finished batch (its log lines go to the campaign log)."""
        from distributed import KilledWorker

        saved = (f"{finished} results of this session are saved in {store.path}; "
                 f"--resume continues")
        try:
            res = fut.result()
        except KilledWorker as e:
            raise CampaignError(f"seeds {seeds[0]}..{seeds[-1]} killed every worker that ran "
                                f"them ({e}); {saved}") from None
        except ClusterMismatch as e:
            raise ClusterError(f"{e}; {saved}") from None
        except Exception as e:  # noqa: BLE001 - cancelled with the scheduler, or a bug
            if fut.status == "cancelled" or self.client.status != "running":
                raise ClusterError(f"lost the Dask scheduler at {self.address}; "
                                   f"{saved}") from None
            raise ClusterError(f"a batch of seeds {seeds[0]}..{seeds[-1]} failed on its "
                               f"worker ({_why(e)}); {saved}") from None
        self.batches += 1
        per = res["seconds"] / max(1, len(seeds))
        self.per_run = per if self.per_run is None else 0.7 * self.per_run + 0.3 * per
        here = socket.gethostname()
        for line in res["log"]:
            msg = line["msg"] if res["host"] == here else f"[{res['host']}] {line['msg']}"
            log.handle(logging.makeLogRecord({**line, "name": LOGGER, "msg": msg,
                                              "args": None}))
        return res["records"]

    def _check_cluster(self, workers: int, lost_since: float | None, finished: int,
                       store: ResultStore) -> float | None:
        """Give a scheduler that went away, or a cluster left without workers, ``timeout``
        seconds to come back, then stop (the batches would wait for ever)."""
        if self.client.status == "running" and workers:
            return None
        now = time.monotonic()
        if lost_since is None or now - lost_since < self.timeout:
            return lost_since or now
        what = ("lost the Dask scheduler at" if self.client.status != "running"
                else "no Dask worker left at")
        raise ClusterError(f"{what} {self.address} (for {self.timeout:g} s); {finished} "
                           f"results of this session are saved in {store.path}; "
                           f"--resume continues")
