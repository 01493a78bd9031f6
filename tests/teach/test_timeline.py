"""tdpmmu.teach.timeline: the Gantt chart of a traced run."""

from __future__ import annotations

import pytest

from tdpmmu.teach import Trace
from tdpmmu.teach.timeline import intervals, lanes, render_timeline, reports_text

from .conftest import memslot_delete

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def kinds_of(segs, thread):
    return {s.kind for s in segs if s.thread == thread}


@pytest.mark.timeout(60)
def test_intervals_show_who_holds_mmu_lock_who_waits_and_who_runs_work(deadlock_run):
    tr = Trace.from_result(deadlock_run)
    segs = intervals(tr)
    kworker = next(t for t in tr.threads if t.startswith("kworker"))
    assert {"alive", "mmu_lock(W)", "wait flush"} <= kinds_of(segs, "main")
    assert {"work", "wait mmu_lock"} <= kinds_of(segs, kworker)
    held = next(s for s in segs if s.thread == "main" and s.kind == "mmu_lock(W)"
                and s.end_ns > 0)
    flush = next(s for s in segs if s.thread == "main" and s.kind == "wait flush")
    assert flush.label == "flush(kvm)"
    # The bug in one picture: main waits in the flush while it holds mmu_lock for write.
    assert held.start_ns <= flush.start_ns < held.end_ns
    wait = next(s for s in segs if s.thread == kworker and s.kind == "wait mmu_lock")
    assert wait.label == "mmu_lock(R)"
    for s in segs:
        assert s.start_ns <= s.end_ns


@pytest.mark.timeout(60)
def test_intervals_are_the_same_for_the_same_seed():
    a = intervals(Trace.from_result(memslot_delete(seed=5)))
    b = intervals(Trace.from_result(memslot_delete(seed=5)))
    assert a == b and a


@pytest.mark.timeout(60)
def test_rescuer_threads_that_only_start_and_exit_get_no_lane(clean_run):
    tr = Trace.from_result(clean_run)
    names = lanes(tr, intervals(tr))
    assert names[0] == "main" and "vcpu-0" in names
    assert "kvm" not in names          # the WQ_MEM_RECLAIM rescuer never ran a work


@pytest.mark.timeout(120)
def test_the_png_is_written_and_identical_for_the_same_seed(deadlock_run, tmp_path):
    tr = Trace.from_result(deadlock_run, title="flush under mmu_lock")
    first = render_timeline(tr, tmp_path / "a.png", dpi=50)
    again = render_timeline(Trace.from_result(memslot_delete(
        seed=1, bugs=("flush-under-mmu-lock",)), title="flush under mmu_lock"),
        tmp_path / "b.png", dpi=50)
    data = first.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5_000
    assert data == again.read_bytes()


def test_each_report_is_numbered_under_the_chart(deadlock_run):
    lines = reports_text(Trace.from_result(deadlock_run))
    assert lines[0].startswith("1: sleep-in-atomic by main at step ")
    assert lines[1].startswith("2: circular-locking-dependency by main")
    assert lines[2].startswith("3: deadlock at step ")        # no thread: the scheduler found it
    assert all(len(ln) <= 120 for ln in lines)


def test_a_bad_file_name_or_directory_is_refused(clean_run, tmp_path):
    tr = Trace.from_result(clean_run)
    with pytest.raises(ValueError, match="must end in .png"):
        render_timeline(tr, tmp_path / "chart.svg")
    with pytest.raises(ValueError, match="does not exist"):
        render_timeline(tr, tmp_path / "nowhere" / "chart.png")


def test_a_window_zooms_on_steps_and_the_free_of_struct_kvm_is_marked(clean_run, tmp_path):
    from tdpmmu.teach.timeline import frees_of_note, window_ns
    tr = Trace.from_result(clean_run)
    start = clean_run.params["marks"]["delete_start"]
    t0, t1 = window_ns(tr, (start, start + 30))
    assert 0 < t0 < t1 < tr.end_ns
    assert [name for _, name in frees_of_note(tr)] == ["kvm"]
    with pytest.raises(ValueError, match="no event in those steps"):
        window_ns(tr, (10**9, 10**9 + 1))
