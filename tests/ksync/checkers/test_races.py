"""The race detector: unlocked accesses race, every happens-before source orders."""

from __future__ import annotations

import pytest

import ksync
from ksync import events as ev
from ksync.checkers import add_suppression, get_checker, races_report

from .util import MODES, cases, kinds, of_kind, run, spawn_all

RACES = ("races",)


def _incr(counter: ksync.Shared, n: int = 3) -> None:
    for _ in range(n):
        counter.write(counter.read() + 1)


def _two_incrementers(rt: ksync.Runtime, guard=None) -> ksync.Shared:
    counter = ksync.Shared("counter", 0)

    def inc():
        if guard is None:
            _incr(counter)
        else:
            for _ in range(3):
                with guard():
                    _incr(counter, 1)
    spawn_all(rt, inc, inc)
    return counter


@pytest.mark.parametrize("mode,seed", cases())
def test_unlocked_counter_increment_is_a_data_race(mode, seed):
    rt = run(_two_incrementers, mode, seed, RACES)
    races = of_kind(rt, "data-race")
    assert races and kinds(rt) == ["data-race"] * len(races)
    r = races[0]
    assert r.data["location"] == "counter"
    assert {r.data["access"]["thread"], r.data["previous"]["thread"]} == {"t0", "t1"}
    assert r.data["access"]["stack"][0].endswith(" _incr")
    assert "write" in (r.data["access"]["op"], r.data["previous"]["op"])
    for piece in ("WARNING: ThreadSanitizer: data race", " of size 8 at counter by thread T",
                  "  Previous ", "#0 _incr ", "test_races.py:",
                  "Location is ksync.Shared 'counter'.", "created by main thread at:",
                  "SUMMARY: ThreadSanitizer: data race "):
        assert piece in r.text, piece


def _spin():
    return ksync.SpinLock("counter_lock")


def _mutex():
    return ksync.Mutex("counter_mutex")


def _rw_write():
    return ksync.RwLock("counter_rwlock")


@pytest.mark.parametrize("make,enter", [
    (_spin, lambda lk: lk), (_mutex, lambda lk: lk), (_rw_write, lambda lk: lk.write())],
    ids=["spinlock", "mutex", "rwlock-write"])
@pytest.mark.parametrize("mode,seed", cases())
def test_the_same_increment_under_a_lock_is_silent(mode, seed, make, enter):
    def body(rt):
        lk = make()
        counter = _two_incrementers(rt, guard=lambda: enter(lk))
        assert counter.peek() == 6
    rt = run(body, mode, seed, RACES)
    assert rt.reports == []


@pytest.mark.parametrize("mode,seed", cases())
def test_an_atomic_counter_is_silent(mode, seed):
    def body(rt):
        counter = ksync.Atomic(0, "counter")

        def inc():
            for _ in range(3):
                counter.inc()
                counter.read()
        spawn_all(rt, inc, inc, inc)
        assert counter.peek() == 9
    rt = run(body, mode, seed, RACES)
    assert rt.reports == []


@pytest.mark.parametrize("mode,seed", cases())
def test_message_passing_through_an_atomic_flag_orders_the_payload(mode, seed):
    def body(rt):
        data, flag = ksync.Shared("payload", 0), ksync.Atomic(0, "ready")

        def producer():
            data.write(42)
            flag.set(1)

        def consumer():
            while flag.read() == 0:
                ksync.cond_resched()
            assert data.read() == 42
        spawn_all(rt, producer, consumer)
    rt = run(body, mode, seed, RACES)
    assert rt.reports == []


@pytest.mark.parametrize("mode,seed", cases()[::4])
def test_writes_under_a_read_lock_race_and_reads_do_not(mode, seed):
    def body(rt):
        lk = ksync.RwLock("kvm->mmu_lock")
        cfg, stat = ksync.Shared("cfg", 1), ksync.Shared("stat", 0)

        def reader():
            with lk.read():
                cfg.read()
                stat.write(1)       # a plain write under read_lock: readers share
        spawn_all(rt, reader, reader)
    rt = run(body, mode, seed, RACES)
    races = of_kind(rt, "data-race")
    assert [r.data["location"] for r in races] == ["stat"]
    assert "(mutexes: read kvm->mmu_lock)" in races[0].text
    assert races[0].data["access"]["mutexes"] == [["read", "kvm->mmu_lock"]]


@pytest.mark.parametrize("mode,seed", cases())
def test_readers_and_a_writer_of_an_rwlock_are_ordered_both_ways(mode, seed):
    def body(rt):
        lk = ksync.RwLock("kvm->mmu_lock")
        cfg = ksync.Shared("cfg", 0)

        def reader():
            for _ in range(3):
                with lk.read():
                    cfg.read()

        def writer():
            for i in range(3):
                with lk.write():
                    cfg.write(i)
        spawn_all(rt, reader, writer, reader)
    assert run(body, mode, seed, RACES).reports == []


@pytest.mark.parametrize("mode,seed", cases()[::2])
def test_a_race_report_names_the_locks_each_side_held(mode, seed):
    def body(rt):
        lk = ksync.SpinLock("stats_lock")
        cell = ksync.Shared("stats", 0)

        def locked():
            with lk:
                cell.write(1)

        def unlocked():
            cell.write(2)
        spawn_all(rt, locked, unlocked)
    rt = run(body, mode, seed, RACES)
    (r,) = of_kind(rt, "data-race")
    held = {r.data["access"]["thread"]: r.data["access"]["mutexes"],
            r.data["previous"]["thread"]: r.data["previous"]["mutexes"]}
    assert held == {"t0": [["write", "stats_lock"]], "t1": []}
    assert "(mutexes: write stats_lock)" in r.text


@pytest.mark.parametrize("mode,seed", cases())
def test_spawn_and_join_order_parent_and_child(mode, seed):
    def body(rt):
        cell = ksync.Shared("cell", 0)
        cell.write(1)                        # before spawn: seen by the child

        def child():
            cell.write(cell.read() + 1)
        for _ in range(2):
            rt.spawn(child, name="child").join()
        assert cell.read() == 3              # after join: ordered after the child
    rt = run(body, mode, seed, RACES)
    assert rt.reports == []


@pytest.mark.parametrize("mode,seed", cases())
def test_a_completion_orders_the_completer_before_the_waiter(mode, seed):
    def body(rt):
        cell, done = ksync.Shared("result", None), ksync.Completion("result_ready")

        def producer():
            cell.write("answer")
            done.complete()

        def consumer():
            done.wait()
            assert cell.read() == "answer"
        spawn_all(rt, consumer, producer)
    rt = run(body, mode, seed, RACES)
    assert rt.reports == []


@pytest.mark.parametrize("mode,seed", cases()[::2])
def test_reading_without_waiting_for_the_completion_is_a_race(mode, seed):
    def body(rt):
        cell, done = ksync.Shared("result", None), ksync.Completion("result_ready")

        def producer():
            cell.write("answer")
            done.complete()

        def consumer():
            cell.read()                      # the bug: reads before wait_for_completion()
            done.wait()
        spawn_all(rt, consumer, producer)
    rt = run(body, mode, seed, RACES)
    assert [r.data["location"] for r in of_kind(rt, "data-race")] == ["result"]


@pytest.mark.parametrize("mode,seed", cases())
def test_the_last_refcount_put_is_ordered_after_every_user(mode, seed):
    def body(rt):
        ref = ksync.Refcount(2, "obj->refcount")
        slots = [ksync.Shared(f"obj->slot[{i}]", 0) for i in range(2)]

        def user(i):
            slots[i].write(i + 1)
            if ref.dec_and_test():           # the last one tears the object down
                for s in slots:
                    s.write(s.read() * 0)
        spawn_all(rt, lambda: user(0), lambda: user(1))
    rt = run(body, mode, seed, RACES)
    assert rt.reports == []


@pytest.mark.parametrize("mode,seed", cases())
def test_hb_release_and_acquire_events_order_like_queue_work_and_flush(mode, seed):
    # The work-queue protocol on the spine: queue_work releases to the work,
    # the worker acquires when the work starts, releases when it ends, and
    # flush_work acquires on return.
    def body(rt):
        work, arg, result = object(), ksync.Shared("work->arg", 0), ksync.Shared("work->result", 0)
        queued, finished = ksync.Atomic(0, "queued"), ksync.Atomic(0, "finished")

        def emit(kind):
            t = ksync.current_thread()
            rt.emit(t, kind, work, None)

        def worker():
            while queued.read() == 0:
                ksync.cond_resched()
            emit(ev.HB_ACQUIRE)
            result.write(arg.read() * 2)
            emit(ev.HB_RELEASE)
            finished.set(1)

        w = rt.spawn(worker, name="kworker/0:1")
        arg.write(21)
        emit(ev.HB_RELEASE)
        queued.set(1)
        while finished.read() == 0:
            ksync.cond_resched()
        emit(ev.HB_ACQUIRE)
        assert result.read() == 42
        arg.write(0)
        w.join()
    rt = run(body, mode, seed, RACES)
    assert rt.reports == []


@pytest.mark.parametrize("mode,seed", cases()[::2])
def test_a_real_work_queue_orders_queue_work_the_work_and_flush_work(mode, seed):
    import workqueue
    seen = []

    def body(rt):
        arg, result = ksync.Shared("work->arg", 0), ksync.Shared("work->result", 0)
        wq = workqueue.alloc_workqueue("checker_test", 0, 1)

        def fn(_work):
            result.write(arg.read() * 2)
        work = workqueue.Work(fn, name="double")
        for x in (1, 2, 3):
            arg.write(x)
            workqueue.queue_work(wq, work)
            workqueue.flush_work(work)
            seen.append(result.read())
        workqueue.destroy_workqueue(wq)
    rt = run(body, mode, seed, RACES)
    assert rt.reports == [] and seen == [2, 4, 6]


def _rcu_pair(rt: ksync.Runtime, grace_period: bool, saw: list) -> None:
    ptr, data = ksync.Atomic(1, "gp->ptr"), ksync.Shared("gp->obj", "old")

    def reader():
        with ksync.rcu:
            if ptr.read() == 1:
                saw.append(data.read())

    def updater():
        ptr.set(0)                           # unpublish
        if grace_period:
            ksync.synchronize_rcu()          # wait for readers that may still see it
        data.write("reused")
    spawn_all(rt, reader, updater)


@pytest.mark.parametrize("mode,seed", cases())
def test_an_rcu_grace_period_orders_readers_before_the_reuse(mode, seed):
    saw: list = []
    rt = run(lambda rt: _rcu_pair(rt, True, saw), mode, seed, ("races", "atomic_sleep"))
    assert rt.reports == []


@pytest.mark.parametrize("mode,seed", cases())
def test_reuse_without_a_grace_period_races_with_a_reader_that_saw_the_object(mode, seed):
    saw: list = []
    rt = run(lambda rt: _rcu_pair(rt, False, saw), mode, seed, RACES)
    want = ["gp->obj"] if saw else []
    assert [r.data["location"] for r in of_kind(rt, "data-race")] == want


@pytest.mark.parametrize("mode,seed", cases()[::2])
def test_atomic_field_accesses_never_race_with_each_other(mode, seed):
    class Spte:
        name = "sptep"

    def body(rt):
        sp = Spte()

        def cmpxchg():
            t = ksync.current_thread()
            for _ in range(3):
                rt.emit(t, ev.ACCESS, sp, ("atomic-read", "spte"))
                rt.emit(t, ev.ACCESS, sp, ("atomic-write", "spte"))
        spawn_all(rt, cmpxchg, cmpxchg)
    rt = run(body, mode, seed, RACES)
    assert rt.reports == []


@pytest.mark.parametrize("mode,seed", cases()[::2])
def test_a_plain_write_races_with_an_atomic_one(mode, seed):
    class Spte:
        name = "sptep"

    def body(rt):
        sp = Spte()

        def cmpxchg():
            rt.emit(ksync.current_thread(), ev.ACCESS, sp, ("atomic-write", "spte"))

        def plain_store():
            ksync.check_access(sp, "spte", write=True)
        spawn_all(rt, cmpxchg, plain_store)
    rt = run(body, mode, seed, RACES)
    (r,) = of_kind(rt, "data-race")
    assert r.data["location"] == "sptep.spte"
    assert {r.data["access"]["op"], r.data["previous"]["op"]} == {"write", "atomic write"}
    assert "Location is field 'spte' of sptep." in r.text


@pytest.mark.parametrize("mode", MODES)
def test_check_access_on_a_tracked_object_races_on_its_field(mode):
    class Root:
        name = "root"

    def body(rt):
        root = ksync.track(Root(), "root")

        def touch():
            ksync.check_access(root, "role", write=True)
        spawn_all(rt, touch, touch)
    rt = run(body, mode, 0, RACES)
    assert [r.data["location"] for r in of_kind(rt, "data-race")] == ["root.role"]


def racy_stats_update(counter: ksync.Shared) -> None:
    counter.write(counter.read() + 1)


def _racy_stats(rt: ksync.Runtime, extra: list[str] = ()) -> None:
    get_checker(rt, "races").suppressions.extend(extra)
    counter = ksync.Shared("stats", 0)
    spawn_all(rt, lambda: racy_stats_update(counter), lambda: racy_stats_update(counter))


@pytest.mark.parametrize("mode", MODES)
def test_a_suppression_by_function_name_hides_the_race_and_counts_it(mode):
    box = {}

    def body(rt):
        _racy_stats(rt, ["racy_stats_*"])
        box["det"] = get_checker(rt, "races")
    rt = run(body, mode, 0, RACES)
    assert rt.reports == [] and box["det"].suppressed >= 1
    rt = run(lambda rt: _racy_stats(rt, ["unrelated_function"]), mode, 0, RACES)
    assert of_kind(rt, "data-race")


def test_suppressions_from_the_module_list_and_the_environment(monkeypatch, tmp_path):
    monkeypatch.setattr(races_report, "SUPPRESSIONS", [])
    add_suppression("race:racy_stats_update")
    assert kinds(run(_racy_stats, "controlled", 0, RACES)) == []
    monkeypatch.setattr(races_report, "SUPPRESSIONS", [])
    assert kinds(run(_racy_stats, "controlled", 0, RACES)) == ["data-race"]
    supp = tmp_path / "tsan.supp"
    supp.write_text("# TSan-style file\nrace:racy_stats_update\n")
    monkeypatch.setenv("KSYNC_SUPPRESS", f"some_other_fn, @{supp}")
    assert kinds(run(_racy_stats, "controlled", 0, RACES)) == []


def test_each_pair_of_racing_sites_is_reported_once():
    def body(rt):
        counter = ksync.Shared("counter", 0)

        def inc():
            _incr(counter, 20)
        spawn_all(rt, inc, inc, inc)
    for seed in range(5):
        rt = run(body, "controlled", seed, RACES)
        pairs = [frozenset((r.data["access"]["stack"][0], r.data["previous"]["stack"][0]))
                 for r in rt.reports]
        assert pairs and len(pairs) == len(set(pairs)) <= 3


def test_races_off_reports_nothing():
    assert run(_two_incrementers, "controlled", 0, ("lockdep",)).reports == []
