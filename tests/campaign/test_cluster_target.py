"""``--cluster`` without a cluster: the address is checked, a missing extra is one line.

These need no Dask; the ones that start a cluster are in ``test_cluster.py``.
"""

from __future__ import annotations

import sys

import pytest

from tdpmmu.campaign.cluster import (
    DEFAULT_PORT,
    ClusterError,
    ClusterMismatch,
    parse_target,
    run_batch,
    software_here,
)
from tdpmmu.campaign.spec import CampaignSpec

from ..cli.util import exit_code


@pytest.mark.parametrize("text, address, local", [
    ("local:1", None, 1),
    ("local:4", None, 4),
    ("tcp://10.0.0.5:8786", "tcp://10.0.0.5:8786", 0),
    ("node7:9000", "tcp://node7:9000", 0),
    ("tcp://node7", f"tcp://node7:{DEFAULT_PORT}", 0),
    ("tls://sched.example.org:8786", "tls://sched.example.org:8786", 0),
    ("tcp://[::1]:8786", "tcp://[::1]:8786", 0),
])
def test_a_good_cluster_address_is_understood(text, address, local):
    t = parse_target(text)
    assert (t.address, t.local, t.text) == (address, local, text)


@pytest.mark.parametrize("text, needle", [
    ("local:0", "local:N takes a number of workers"),
    ("local:x", "local:N takes a number of workers"),
    ("local", "local:N takes a number of workers"),
    ("local:100000", "local:N takes a number of workers"),
    ("http://node:8786", "unknown protocol 'http'"),
    ("tcp://node:99999", "not a scheduler address"),
    ("tcp://node:port", "not a scheduler address"),
    ("tcp://node:8786/status", "not a scheduler address"),
    ("tcp://:8786", "not a scheduler address"),
])
def test_a_bad_cluster_address_is_refused_with_its_reason(text, needle):
    with pytest.raises(ClusterError, match=needle):
        parse_target(text)


def test_a_bad_address_on_the_command_line_is_one_line_and_exit_two(tmp_path, capsys):
    argv = ["fuzz", "--scenario", "memslot_churn", "--runs", "3", "--cluster", "local:0",
            "--out", str(tmp_path / "c"), "-q"]
    assert exit_code(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "local:N takes a number of workers" in err
    assert not (tmp_path / "c").exists(), "nothing is started for a bad address"


def test_cluster_without_the_extra_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    # None in sys.modules makes ``import distributed`` fail as if it were not installed.
    monkeypatch.setitem(sys.modules, "distributed", None)
    argv = ["fuzz", "--scenario", "memslot_churn", "--runs", "3", "--cluster", "local:2",
            "--out", str(tmp_path / "c"), "-q"]
    assert exit_code(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "needs Dask distributed, which is not installed" in err
    assert "tdpmmu[cluster]" in err


def test_a_worker_with_other_software_refuses_its_batch():
    theirs = {**software_here(), "tdpmmu": "0.0.1"}
    spec = CampaignSpec("memslot_churn", runs=1).to_dict()
    with pytest.raises(ClusterMismatch, match="tdpmmu 0.0.1 here, .* there"):
        run_batch(spec, [0], theirs)
