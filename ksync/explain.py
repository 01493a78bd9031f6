"""What each report kind means, and where the kernel has the same check.

Kernel counterpart: the documentation a kernel developer reaches for when
dmesg shows a splat — Documentation/locking/lockdep-design.rst,
Documentation/dev-tools/kasan.rst and kcsan.rst, the comments of
include/linux/refcount.h and kernel/hung_task.c.  ``explain(kind)`` gives
the full text for one kind of ``ksync.report.KINDS``; ``summary(kind)`` the
one line printed under each report.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

from .report import KINDS


class UnknownKind(ValueError):
    """A report kind that ``ksync.report.KINDS`` does not have."""


@dataclass(frozen=True)
class Explanation:
    """One report kind explained: a one-line ``summary`` and three paragraphs."""

    kind: str
    summary: str
    meaning: str
    kernel: str
    fix: str


_EXPLANATIONS = (
    Explanation(
        "circular-locking-dependency",
        "two paths take the same locks in opposite orders; run together they can deadlock",
        "Lockdep records, for every lock class, which classes were already held when it "
        "was taken. Here a new acquisition closed a cycle in that graph: somewhere A is "
        "taken before B, and here B is held while A is taken. The run did not need to "
        "deadlock for this to be found: the orders were each seen once, possibly in "
        "different threads and at different times. Work-queue flushes count as taking a "
        "pseudo-lock the worker holds while the work runs, so flushing a work that takes "
        "lock L while holding L is a cycle too.",
        "lockdep, kernel/locking/lockdep.c: check_noncircular() and print_circular_bug() "
        "print \"WARNING: possible circular locking dependency detected\" with the chain. "
        "The work-queue maps are lockdep_map (wq_completion)NAME and (work_completion)WORK "
        "in kernel/workqueue.c (process_one_work, __flush_workqueue).",
        "Pick one order and document it where the locks are declared (KVM: slots_lock -> "
        "mmu_lock -> tdp_mmu_pages_lock), or move the inner operation out of the critical "
        "section: kvm_tdp_mmu_zap_invalidated_roots() runs after write_unlock(&kvm->mmu_lock) "
        "for exactly this reason (catalogue bug flush-under-mmu-lock)."),
    Explanation(
        "recursive-locking",
        "a thread takes a lock class it already holds",
        "The thread already holds a lock of this class and asks for it again. For a "
        "spinlock or mutex that is a self-deadlock; for an rwlock taken for read it "
        "deadlocks as soon as a writer queues between the two reads (queued rwlocks make "
        "new readers wait behind a waiting writer).",
        "lockdep, kernel/locking/lockdep.c: check_deadlock() and print_deadlock_bug() print "
        "\"WARNING: possible recursive locking detected\".",
        "Do not re-take the lock: pass down that it is held (and assert it with "
        "lockdep_assert_held), or use a nested class (spin_lock_nested) when two distinct "
        "objects of one class are really meant to nest."),
    Explanation(
        "deadlock",
        "every live thread was waiting and nothing could wake any of them",
        "The runtime found a state in which no thread could run: each was blocked on a "
        "lock, a flush, a completion or a join whose owner was itself blocked. The report "
        "prints the wait-for cycle. In controlled mode this is exact; the run was unwound "
        "so it ends instead of hanging.",
        "No single check: a real kernel simply hangs. lockdep predicts such cycles "
        "(circular-locking-dependency) and the hung-task detector, kernel/hung_task.c, "
        "reports the stuck tasks after hung_task_timeout_secs. Here both views usually "
        "appear together.",
        "Read the cycle: each edge is 'T waits for X held by U'. Break it the same way as "
        "a circular dependency, by ordering the locks or dropping one before waiting."),
    Explanation(
        "data-race",
        "two threads touched the same memory, at least one writing, with nothing ordering them",
        "Two accesses to one location, at least one a plain write, were not ordered by "
        "happens-before: no lock held in common, no atomic release/acquire pair, no work "
        "queue or completion edge between them. The result depends on timing. The report "
        "shows both stacks, as ThreadSanitizer does. Locations seen: ksync.Shared cells, "
        "explicit ksync.check_access fields, and every attribute (or item) read and write "
        "of an object passed to ksync.shared; an object of yours that is not shared is "
        "not watched for races.",
        "KCSAN, kernel/kcsan/ (\"BUG: KCSAN: data-race in ...\"), and ThreadSanitizer's "
        "happens-before vector clocks in user space. In KVM, SPTEs changed under mmu_lock "
        "for read must be compare-exchanges (tdp_mmu_set_spte_atomic in "
        "arch/x86/kvm/mmu/tdp_mmu.c).",
        "Protect the location with the lock its rule names, or make both sides atomic "
        "(catalogue bugs non-atomic-shared-zap, worker-zap-without-mmu-lock)."),
    Explanation(
        "use-after-free",
        "an object was used after it had been freed",
        "A tracked object (struct kvm, a root, a page-table page, a vCPU, or any object "
        "of yours passed to ksync.track or ksync.shared) was accessed after kfree(). The "
        "report names the object and its type and shows the access and its thread, where "
        "it was allocated and where it was freed. In the kernel the memory may already "
        "belong to someone else, so anything can follow. What is seen: every attribute "
        "read, write and delete of a freed object of a Python class (plain, dataclass, "
        "__slots__), its items, len(), iteration and `in`; for a list, dict, bytearray, "
        "set or numpy array, the same through the wrapper track() returns; explicit "
        "ksync.check_access() calls; operations on a freed ksync lock, atomic, refcount "
        "or Shared cell. Not seen: accesses through another reference to a wrapped "
        "container (its unwrap() or the list itself), code in C extensions that reads the "
        "object's memory directly, immutable values (int, str, tuple), and objects of a "
        "class that cannot be subclassed.",
        "KASAN, mm/kasan/report.c: \"BUG: KASAN: slab-use-after-free in ...\" with the "
        "allocation and free stacks. KVM's defences: flush the zap queue before the VM is "
        "freed (kvm_mmu_uninit_tdp_mmu), zap inline when users_count is zero, free page "
        "tables through call_rcu so lockless walkers never see freed pages.",
        "Find who still held a pointer when the object was freed, and make the free wait "
        "for them: a flush, a refcount, an RCU grace period (catalogue bugs "
        "no-flush-before-free, no-users-count-check, free-page-table-without-rcu, "
        "reuse-invalid-root, skip-invalid-roots-on-notifier)."),
    Explanation(
        "double-free",
        "an object was freed twice",
        "kfree() was called on an object already freed. Two owners each believed they "
        "held the last reference, usually because a refcount was put once too often.",
        "KASAN, mm/kasan/report.c: \"BUG: KASAN: double-free in ...\" "
        "(kasan_report_invalid_free), with both free stacks.",
        "Give the object exactly one owner of its final reference and free only on the "
        "transition to zero (refcount_dec_and_test)."),
    Explanation(
        "invalid-free",
        "an object that was never allocated under watch was freed",
        "kfree() was given an object that ksync.track() (or ksync.shared(), or a Shared "
        "cell) never saw allocated. Either the object was freed by the wrong owner, or its "
        "allocation was not tracked. The freeing thread goes on; nothing is poisoned.",
        "KASAN, mm/kasan/report.c: \"BUG: KASAN: invalid-free in ...\" "
        "(kasan_report_invalid_free), for a free of an address the slab allocator did not "
        "hand out.",
        "Track the object where it is created (ksync.track(obj, name)), or free it "
        "only from the code that owns it."),
    Explanation(
        "refcount",
        "a refcount_t was misused: increment from zero, underflow, or saturation",
        "refcount_t never wraps. Incrementing a count that is zero means reviving an "
        "object whose freeing has begun (\"addition on 0; use-after-free\"); decrementing "
        "below zero means one put too many (\"underflow; use-after-free\"); at the top it "
        "saturates and leaks instead of wrapping. The count stays saturated afterwards.",
        "include/linux/refcount.h and lib/refcount.c: refcount_warn_saturate() prints "
        "\"refcount_t: addition on 0; use-after-free.\" and its siblings. KVM takes root "
        "references with refcount_inc_not_zero() in kvm_tdp_mmu_get_root() so a dying root "
        "is never revived.",
        "Take references that may race with the last put with inc_not_zero and handle "
        "failure; balance every get with one put (catalogue bug "
        "get-root-without-inc-not-zero)."),
    Explanation(
        "sleep-in-atomic",
        "something that may sleep was called while sleeping is forbidden",
        "A function that may block (mutex_lock, msleep, flush_workqueue, "
        "synchronize_rcu) ran while the thread held a spinning lock (spinlock_t, "
        "rwlock_t such as kvm->mmu_lock) or was inside an RCU read section. A CPU holding "
        "a spinlock cannot schedule away; others spin on it meanwhile.",
        "kernel/sched/core.c: __might_sleep() and __might_resched() print \"BUG: sleeping "
        "function called from invalid context at FILE:LINE\" with in_atomic() and the held "
        "locks; might_sleep() marks the functions that may block.",
        "Move the blocking call out of the critical section, or hand the work to "
        "a context that may sleep. KVM never flushes the zap queue under mmu_lock."),
    Explanation(
        "hung-task",
        "a thread made no progress for too long (or the run exceeded its step budget)",
        "A thread stayed blocked past the watchdog's timeout, or the whole run passed "
        "max_steps scheduling points without finishing (a livelock). The report prints "
        "every thread's stack so the blocking chain can be followed.",
        "kernel/hung_task.c: khungtaskd's check_hung_task() prints \"INFO: task NAME:PID "
        "blocked for more than N seconds.\" and, with lockdep, the locks held.",
        "Follow the stacks to what the stuck thread waits on and who should have woken it; "
        "a thread spinning without yielding also ends here (cond_resched is missing)."),
    Explanation(
        "bad-unlock",
        "a lock was released by a thread that does not hold it",
        "An unlock found the lock not held by the caller (never taken, taken by another "
        "thread, or released twice, or released in the wrong mode). The lock's state is "
        "now wrong for every other user.",
        "lockdep, kernel/locking/lockdep.c: print_unlock_imbalance_bug() prints "
        "\"WARNING: bad unlock balance detected!\".",
        "Pair each lock with one unlock on every path (try/finally, with-blocks), in the "
        "same thread and the same mode (read_unlock for read_lock)."),
    Explanation(
        "held-lock-freed",
        "memory holding a lock was freed while the lock was held",
        "An object was freed while one of its locks was still held by some thread. "
        "Whoever releases it later writes into freed memory, and waiters on it never wake.",
        "lockdep, kernel/locking/lockdep.c: debug_check_no_locks_freed() via "
        "print_freed_lock_bug() prints \"BUG: held lock freed!\".",
        "Release (and make sure nobody can take) every lock of an object before freeing "
        "it: for struct kvm, every vCPU and worker is finished before kvm_destroy_vm "
        "frees it."),
    Explanation(
        "lock-held-at-exit",
        "a thread ended while still holding locks",
        "A managed thread returned (or died) with locks held. Every other thread that "
        "needs them will wait forever.",
        "lockdep, kernel/locking/lockdep.c: lockdep_sys_exit() prints \"WARNING: lock "
        "held when returning to user space!\", and do_exit() (kernel/exit.c) calls "
        "debug_check_no_locks_held(), which prints \"still has locks held!\".",
        "Release on every path out, including exceptions; in KVM every ioctl drops "
        "mmu_lock and slots_lock before returning to user space."),
    Explanation(
        "warn",
        "a model invariant failed (the kernel would WARN_ON here)",
        "A lockdep_assert_held() found the lock not held in the mode it names, or the "
        "model checked one of its own invariants and found it broken: roots or "
        "page-table pages left when the VM is uninitialised, a last reference put on a "
        "valid root under the preserve generation, a zap queued twice. The title says "
        "which.",
        "WARN_ON()/WARN_ON_ONCE() (include/asm-generic/bug.h, __warn() in kernel/panic.c) "
        "print \"WARNING: CPU: N PID: P at FILE:LINE\"; KVM uses them in "
        "kvm_mmu_uninit_tdp_mmu() (roots list not empty, pages still accounted) and "
        "KVM_BUG_ON for states that must not happen; lockdep_assert_held() "
        "(include/linux/lockdep.h) WARNs the same way.",
        "Read the title for the invariant and the call site; it is usually the visible "
        "end of an earlier ordering or refcount mistake."),
)

EXPLANATIONS: dict[str, Explanation] = {e.kind: e for e in _EXPLANATIONS}


def get_explanation(kind: str) -> Explanation:
    """The explanation of ``kind``; an unknown kind lists the known ones."""
    e = EXPLANATIONS.get(kind)
    if e is None:
        raise UnknownKind(f"unknown report kind {kind!r}; known: {', '.join(KINDS)}")
    return e


def explain(kind: str, width: int = 78) -> str:
    """The full explanation of report kind ``kind`` as text (``tdpmmu explain KIND``)."""
    e = get_explanation(kind)
    out = [f"{e.kind}: {e.summary}", ""]
    for head, body in (("What it means", e.meaning), ("Where the kernel checks this", e.kernel),
                       ("How it is fixed", e.fix)):
        out.append(head)
        out += textwrap.wrap(body, width, initial_indent="  ", subsequent_indent="  ",
                             break_on_hyphens=False)
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def summary(kind: str) -> str:
    """One line for under a report: what it means and where to read more; '' for unknown kinds."""
    e = EXPLANATIONS.get(kind)
    if e is None:
        return ""
    return f"explain: {e.summary} (more: tdpmmu explain {e.kind})"


__all__ = ["EXPLANATIONS", "Explanation", "UnknownKind", "explain", "get_explanation", "summary"]
