"""tdpmmu.teach.trace: the column-per-thread text trace of a seeded run."""

from __future__ import annotations

import pytest

from tdpmmu.harness import run_scenario
from tdpmmu.teach import Trace, TraceUnavailable
from tdpmmu.teach.record import short_name
from tdpmmu.teach.trace import render_trace, summarise

from .conftest import memslot_delete


def column_of(text: str, thread: str, needle: str) -> bool:
    """Is ``needle`` printed in ``thread``'s column of a rendered trace?"""
    lines = text.splitlines()
    header = next(ln for ln in lines if ln.startswith(" step |"))
    cols = [c.strip() for c in header.split("|")]
    k = cols.index(thread)
    return any(len(ln.split("|")) > k and needle in ln.split("|")[k]
               for ln in lines if ln[:6].strip().isdigit() or ln.startswith("      |"))


@pytest.mark.timeout(60)
def test_the_same_seed_gives_the_same_trace_and_text():
    a, b = memslot_delete(seed=3), memslot_delete(seed=3)
    assert a.trace == b.trace
    assert a.runtime.tracer.times == b.runtime.tracer.times
    assert render_trace(Trace.from_result(a)) == render_trace(Trace.from_result(b))


@pytest.mark.timeout(60)
def test_another_seed_gives_another_interleaving():
    assert memslot_delete(seed=3).trace != memslot_delete(seed=4).trace


@pytest.mark.timeout(60)
def test_each_thread_gets_a_column_with_its_locks_refcounts_work_and_zaps(clean_run):
    text = render_trace(Trace.from_result(clean_run))
    header = next(ln for ln in text.splitlines() if ln.startswith(" step |"))
    assert [c.strip() for c in header.split("|")][1:4] == ["main", "vcpu-0", "vcpu-1"]
    assert column_of(text, "main", "+mmu_lock(W)")
    assert column_of(text, "main", "root#1 ref 2->3 get")
    assert column_of(text, "main", "root#1 invalid")
    assert column_of(text, "main", "queue [root#1 zap]")
    kworker = next(t for t in Trace.from_result(clean_run).threads if t.startswith("kworker"))
    assert column_of(text, kworker, "run [root#1 zap]")
    assert column_of(text, kworker, "+mmu_lock(R)")
    assert column_of(text, kworker, "done [root#1 zap]")
    assert column_of(text, kworker, "zapped 8 SPTEs")
    assert column_of(text, "rcu_gp", "free root#1")


@pytest.mark.timeout(60)
def test_noise_is_hidden_by_default_and_shown_on_request(clean_run):
    tr = Trace.from_result(clean_run)
    default = render_trace(tr)
    assert "vcpu->mode" not in default and "requests" not in default
    assert "rcu_read_lock" not in default and "wq_completion" not in default
    everything = render_trace(tr, hide=())
    assert "vcpu->mode" in everything and "rcu_read_lock" in everything


@pytest.mark.timeout(60)
def test_a_repeated_pattern_is_folded_into_one_row_with_its_count():
    res = run_scenario("root_reload_storm", seed=1, trace=True, params={"vcpus": 1})
    rows = summarise(Trace.from_result(res))
    folded = [r for r in rows if r.text.endswith(tuple(f" x{n}" for n in range(2, 200)))]
    assert folded, "a single vCPU faulting page after page repeats the same rows"
    assert len(rows) < len(res.trace) / 5


@pytest.mark.timeout(60)
def test_waits_and_reports_of_a_deadlock_are_shown(deadlock_run):
    text = render_trace(Trace.from_result(deadlock_run))
    assert column_of(text, "main", "waits flush(kvm)")
    assert "!! circular-locking-dependency (main)" in text
    assert "!! deadlock: deadlock: main waits for flush_workqueue kvm" in text
    kworker = next(t for t in Trace.from_result(deadlock_run).threads
                   if t.startswith("kworker"))
    assert column_of(text, kworker, "waits mmu_lock(R)")


@pytest.mark.timeout(60)
def test_a_window_keeps_only_the_rows_of_those_steps(clean_run):
    start = clean_run.params["marks"]["delete_start"]
    text = render_trace(Trace.from_result(clean_run), window=(start, start + 20), legend=False)
    steps = [int(ln[:6]) for ln in text.splitlines() if ln[:6].strip().isdigit()]
    assert steps and all(start <= s <= start + 20 for s in steps)


def test_bad_arguments_and_runs_without_a_trace_are_refused(clean_run):
    with pytest.raises(ValueError, match="at least 8"):
        render_trace(Trace.from_result(clean_run), width=3)
    res = run_scenario("root_reload_storm", seed=1, params={"vcpus": 1, "pages": 3,
                                                            "reloads": 1})
    with pytest.raises(TraceUnavailable, match="trace=True"):
        Trace.from_result(res)


def test_reports_filed_after_the_last_event_are_placed_at_the_end():
    class R:
        thread, kind, title = "", "hung-task", "late"
    tr = Trace.from_events([(4, "main", "start", "main", "")], [4000], reports=[R()])
    assert tr.reports() == [(4, 4000, "", "hung-task", "late")]


def test_short_names_keep_the_object_and_drop_the_path():
    assert short_name("kvm->mmu_lock") == "mmu_lock"
    assert short_name("kvm->arch.tdp_mmu_pages_lock") == "pages_lock"
    assert short_name("root#12(as1,L5)->tdp_mmu_root_count") == "root#12 ref"


@pytest.mark.timeout(60)
def test_a_free_mode_run_is_placed_by_wall_time():
    import ksync
    with ksync.Runtime(mode="free", trace=True) as rt:
        lock = ksync.Mutex("free_lock")

        def worker():
            for _ in range(3):
                with lock:
                    pass

        for t in [rt.spawn(worker, name=f"w{i}") for i in range(2)]:
            rt.join(t)
    tr = Trace.from_runtime(rt)
    assert tr.times == sorted(tr.times)
    text = render_trace(tr)
    header = next(ln for ln in text.splitlines() if "| main" in ln)
    assert header.split("|")[0].strip() == "us"
    assert "+free_lock(W)" in text or "+-free_lock(W)" in text
