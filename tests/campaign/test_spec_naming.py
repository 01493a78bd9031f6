"""A campaign's name: its default directory, its identity, what sets two apart."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tdpmmu.campaign import CampaignSpec, ResultStore
from tdpmmu.campaign.store import StoreError

BASE = dict(scenario="teardown", zap="async", seed=5, strategy="random")


@pytest.mark.parametrize("change", [
    {"zap": "sync"}, {"bugs": ("no-flush-before-free",)}, {"params": {"vcpus": 4}},
    {"strategy": "pct"}, {"seed": 6}, {"checks": ("lockdep",)}, {"checks": ()},
    {"scenario": "memslot_churn"},
])
def test_every_identity_field_changes_the_directory_name(change):
    assert CampaignSpec(**{**BASE, **change}).dir_name() != CampaignSpec(**BASE).dir_name()


def test_pct_depth_and_steps_change_the_name_but_runs_does_not():
    pct = dict(BASE, strategy="pct")
    names = {CampaignSpec(**pct, depth=d, steps=k).dir_name()
             for d, k in ((2, None), (3, None), (3, 50))}
    assert len(names) == 3
    # Seeds 5..104 extend 5..14: more runs is --resume of the same directory.
    assert CampaignSpec(**BASE, runs=10).dir_name() == CampaignSpec(**BASE, runs=100).dir_name()


def test_name_reads_as_the_options_and_ends_in_a_stable_hash():
    spec = CampaignSpec(**BASE, bugs=("no-flush-before-free", "flush-under-mmu-lock"))
    name = spec.dir_name()
    assert name.startswith("teardown-async-bug=flush-under-mmu-lock+no-flush-before-free-"
                           "random-s5-")
    # The same options given in another order are the same campaign.
    again = CampaignSpec(**BASE, bugs=("flush-under-mmu-lock", "no-flush-before-free"))
    assert again.dir_name() == name
    code = ("from tdpmmu.campaign import CampaignSpec as C; print(C('teardown', seed=5, "
            "strategy='random', bugs=('no-flush-before-free', 'flush-under-mmu-lock'))"
            ".dir_name())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env={"PYTHONHASHSEED": "123", "PATH": ""})
    assert out.stdout.strip() == name, out.stderr


def test_differences_name_each_option_with_both_values():
    here = CampaignSpec(**{**BASE, "zap": "sync", "bugs": ("no-flush-before-free",)})
    there = CampaignSpec(**BASE)
    assert here.differences(there) == ["--bug is no-flush-before-free here, none there",
                                       "--zap is sync here, async there"]
    assert here.differences(here) == []
    assert CampaignSpec(**BASE, checks=()).differences(there) == [
        "--checks is none here, all there"]


def test_steps_left_to_measure_match_the_measured_ones():
    measured = CampaignSpec(**dict(BASE, strategy="pct"), steps=40)
    assert CampaignSpec(**dict(BASE, strategy="pct")).differences(measured) == []
    assert CampaignSpec(**dict(BASE, strategy="pct"), steps=41).differences(measured) == [
        "--steps is 41 here, 40 there"]


def test_a_scenario_spec_keeps_the_identity_it_had_before_scripts():
    # Results files written before script campaigns existed must still resume.
    assert "script" not in CampaignSpec(**BASE).identity()
    s = CampaignSpec.for_script("x.py", ["1"], seed=2)
    assert s.identity()["script_args"] == ["1"] and s.script.endswith("/x.py")
    assert CampaignSpec.from_dict(s.to_dict()) == s
    assert s.dir_name().startswith("script-x-") and s.dir_name() != \
        CampaignSpec.for_script("x.py", ["2"], seed=2).dir_name()


def _store_with(tmp_path, spec: CampaignSpec) -> None:
    st = ResultStore(tmp_path)
    st.open(spec, resume=False)
    st.append({"type": "run", "seed": spec.seed, "clean": True, "steps": 1, "decisions": 1})
    st.close()


def test_store_refuses_another_campaign_naming_the_option_even_with_resume(tmp_path):
    _store_with(tmp_path, CampaignSpec(**BASE))
    for resume in (False, True):
        with pytest.raises(StoreError, match=r"another campaign \(--zap is sync here, "
                                             r"async there\)") as e:
            ResultStore(tmp_path).open(CampaignSpec(**{**BASE, "zap": "sync"}), resume)
        assert "\n" not in str(e.value)


def test_store_asks_for_resume_for_the_same_campaign_and_resume_continues(tmp_path):
    _store_with(tmp_path, CampaignSpec(**BASE, runs=3))
    with pytest.raises(StoreError, match=r"already holds this campaign \(1 runs done; "
                                         r"--resume runs the other 9\); pass --resume"):
        ResultStore(tmp_path).open(CampaignSpec(**BASE, runs=10), resume=False)
    st = ResultStore(tmp_path)
    spec = st.open(CampaignSpec(**BASE, runs=10), resume=True)
    st.close()
    assert spec.runs == 10 and st.done_seeds() == {5}


def test_run_records_are_stamped_with_their_arrival_time(tmp_path):
    _store_with(tmp_path, CampaignSpec(**BASE))
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert "at" not in json.loads(lines[0]) and json.loads(lines[1])["at"] > 1e9


def test_an_out_that_is_a_file_is_one_line(tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(StoreError, match="exists and is not a directory"):
        ResultStore(f).open(CampaignSpec(**BASE), resume=False)
