"""The campaign summary: findings by kind, runs/s over time, schedules to first finding."""

from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ET
from collections import Counter

import pytest

from tdpmmu.campaign import CampaignSpec, run_campaign
from tdpmmu.campaign.summary import summarise, write_summary


def _results(tmp_path, spec: CampaignSpec, runs: list[dict]) -> None:
    lines = [{"type": "campaign", "spec": spec.to_dict()}, *runs]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


def _run(seed: int, at: float | None, kind: str | None = None) -> dict:
    rec = {"type": "run", "seed": seed, "clean": kind is None, "steps": 10, "decisions": 5,
           "seconds": 0.01}
    if at is not None:
        rec["at"] = at
    if kind is not None:
        rec.update(schedule="0x5", reproducible=True, divergence="", divergence_step=None,
                   reports=[{"kind": kind, "title": f"{kind} title", "text": "..."}])
    return rec


def test_summary_of_a_real_campaign_counts_kinds_and_first_findings(toys, tmp_path):
    spec = CampaignSpec("toy_lost_update", runs=20, seed=3, strategy="random")
    o = run_campaign(spec, tmp_path, jobs=1, minimise=False)
    data = summarise(tmp_path)
    recs = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()[1:]]
    runs = [r for r in recs if r["type"] == "run"]
    assert data.runs == 20 and data.clean == o.clean
    assert data.kinds == Counter(r["reports"][0]["kind"] for r in runs if not r["clean"])
    [f] = data.findings
    by_seed, by_arrival, at = data.first[0]
    assert by_seed == f.seed - 3 + 1
    assert by_arrival == 1 + [r["seed"] for r in runs].index(f.seed)
    assert at is not None and at >= 0
    assert data.discovery[-1] == (20, 1) and len(data.rate) == 2


def test_schedules_to_first_finding_in_seed_and_arrival_order(tmp_path):
    spec = CampaignSpec("teardown", runs=6, seed=10)
    # Seeds arrive out of order (two workers): 12 arrives second, 11 fifth.
    arrivals = [(10, None), (12, "data-race"), (13, None), (14, None), (11, "warn"),
                (15, "data-race")]
    _results(tmp_path, spec, [_run(s, 100.0 + i, k) for i, (s, k) in enumerate(arrivals)])
    data = summarise(tmp_path)
    assert [(f.kind, f.seed) for f in data.findings] == [("warn", 11), ("data-race", 12)]
    assert [(a, b) for a, b, _ in data.first] == [(2, 5), (3, 2)]
    assert data.kinds == Counter({"data-race": 2, "warn": 1})
    assert [d for _, d in data.discovery] == [0, 1, 1, 1, 2, 2]


def test_a_resume_gap_is_cut_out_of_the_rate(tmp_path):
    spec = CampaignSpec("teardown", runs=40)
    # 20 runs in 2 s, a night away, 20 more in 2 s.
    runs = [_run(i, 1000.0 + 0.1 * i) for i in range(20)]
    runs += [_run(20 + i, 90000.0 + 0.1 * i) for i in range(20)]
    _results(tmp_path, spec, runs)
    data = summarise(tmp_path)
    assert data.rate and max(t for t, _ in data.rate) < 5.0
    assert all(8 <= r <= 12 for _, r in data.rate)     # about 10 runs/s throughout


def test_runs_without_arrival_times_give_no_rate_but_a_summary(tmp_path):
    spec = CampaignSpec("teardown", runs=30)
    _results(tmp_path, spec, [_run(i, None) for i in range(30)])
    [html] = write_summary(tmp_path, png=False)
    assert summarise(tmp_path).rate == []
    assert "too few time-stamped runs" in html.read_text()


def test_html_is_self_contained_and_names_each_finding_with_its_replay(tmp_path):
    spec = CampaignSpec("teardown", runs=30, bugs=("no-flush-before-free",))
    _results(tmp_path, spec, [_run(i, 50.0 + i / 10, "use-after-free" if i % 7 == 3 else None)
                              for i in range(30)])
    html_path, png_path = write_summary(tmp_path)
    text = html_path.read_text()
    assert html_path.name == "summary.html" and png_path.name == "summary.png"
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "use-after-free: use-after-free title" in text
    assert "tdpmmu replay --scenario teardown --zap async --bug no-flush-before-free" in text
    assert "30 runs, 26 clean, 1 distinct finding(s)" in text
    assert "<img src='summary.png'" in text
    # Nothing fetched from elsewhere: every src is the PNG beside it.
    assert re.findall(r"src='([^']*)'", text) == ["summary.png"]
    svgs = re.findall(r"<svg.*?</svg>", text, flags=re.S)
    assert len(svgs) == 2
    for svg in svgs:
        ET.fromstring(svg)          # well-formed: browsers draw it


def test_without_matplotlib_the_html_is_still_written(tmp_path, monkeypatch):
    spec = CampaignSpec("teardown", runs=10)
    _results(tmp_path, spec, [_run(i, 10.0 + i) for i in range(10)])
    monkeypatch.setitem(sys.modules, "matplotlib", None)    # import matplotlib fails
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    [html_path] = write_summary(tmp_path)
    assert not (tmp_path / "summary.png").exists()
    assert "<img" not in html_path.read_text()


def test_incomplete_campaign_says_so_and_a_resumed_one_shows_its_runs(tmp_path):
    _results(tmp_path, CampaignSpec("teardown", runs=50), [_run(i, 1.0 + i) for i in range(5)])
    [html_path] = write_summary(tmp_path, png=False)
    assert "incomplete: 5 of 50" in html_path.read_text()
    # Resumed with --runs 5, the header still says 50: the spec in force wins.
    [html_path] = write_summary(tmp_path, CampaignSpec("teardown", runs=5), png=False)
    text = html_path.read_text()
    assert "seeds 0..4" in text and "incomplete" not in text


@pytest.mark.parametrize("body", ["", "not json\n"])
def test_an_unreadable_results_file_is_a_store_error(tmp_path, body):
    from tdpmmu.campaign.store import StoreError
    (tmp_path / "results.jsonl").write_text(body)
    with pytest.raises(StoreError, match="not a campaign results file"):
        summarise(tmp_path)
