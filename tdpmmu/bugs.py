"""The catalogue: historical bugs and design hazards that can be switched back on.

Each entry re-introduces one bug on purpose (``Kvm(bugs={"name"})``); the
correct model is the default.  ``expected_kind`` is the report kind that
should catch it (``latency`` when only ``tdpmmu stall`` shows it) and
``scenario`` the scenario in which it shows, ``zap`` the generation it
belongs to (the bug campaigns run it there) and ``strategy`` the controlled
schedule strategy its campaign uses: ``pct`` where the bug needs one thread
starved for a while (a queued work that has not started yet), which the
uniform random walk rarely does.  ``params`` are scenario parameters its
campaign (and its clean counterpart) passes, as ``(name, value)`` pairs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Bug:
    name: str
    summary: str
    kernel_ref: str
    expected_kind: str
    scenario: str
    interleaving: str
    zap: str = "async"
    strategy: str = "random"
    params: tuple[tuple[str, object], ...] = ()

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["params"] = dict(self.params)
        return d


CATALOGUE: tuple[Bug, ...] = (
    Bug("no-flush-before-free",
        "teardown frees struct kvm without flushing the zap queue",
        "KVM: x86/mmu: Zap defunct roots via asynchronous worker (5.18): "
        "kvm_mmu_uninit_tdp_mmu() flushes tdp_mmu_zap_wq before the VM is freed",
        "use-after-free", "teardown",
        "A root invalidated just before teardown still has its zap queued when the VM "
        "is freed. The worker then takes kvm->mmu_lock inside the freed struct kvm.",
        strategy="pct"),
    Bug("no-users-count-check",
        "put_root hands the zap to the worker even while the VM is being destroyed",
        "KVM: x86/mmu: Zap defunct roots via asynchronous worker (5.18), its first version "
        "on the list: the zap went to system_wq holding a VM reference from "
        "kvm_get_kvm_safe(), zapping inline when that failed (users_count zero)",
        "use-after-free", "teardown",
        "During teardown each vCPU puts its root after the VM's users_count reached zero, "
        "and the zap is queued on system_wq with no VM reference, since none can be taken. "
        "Nothing flushes system_wq before struct kvm is freed, so the worker takes "
        "kvm->mmu_lock in a freed VM.",
        params=(("zap_wq", "system"),)),
    Bug("flush-under-mmu-lock",
        "invalidated roots are flushed while mmu_lock is held",
        "KVM: x86/mmu: Zap defunct roots via asynchronous worker (5.18): "
        "kvm_tdp_mmu_zap_invalidated_roots() must run after write_unlock(&kvm->mmu_lock)",
        "circular-locking-dependency", "memslot_churn",
        "zap_all_fast flushes the zap queue before dropping mmu_lock for write. The "
        "worker it waits for needs mmu_lock for read, so the flush never returns."),
    Bug("get-root-without-inc-not-zero",
        "a walker takes a root reference with a plain increment",
        "KVM: x86/mmu: Use refcount_inc_not_zero() in kvm_tdp_mmu_get_root() and the "
        "rule that a root whose count hit zero is never revived",
        "refcount", "root_reload_storm",
        "A root iterator reaches a root whose last reference was just put. A plain "
        "increment revives it from zero while its freeing is already under way. (Under "
        "async the last put marks the root invalid at once, so walkers of valid roots skip "
        "it; the sync generation keeps it valid until unlinked.)",
        zap="sync"),
    Bug("reuse-invalid-root",
        "a vCPU loading its MMU reuses an invalid root that the worker is zapping",
        "kvm_tdp_mmu_get_vcpu_root_hpa() only reuses roots whose role matches, and an "
        "invalid root never matches (role.invalid)",
        "warn", "memslot_churn",
        "After zap_all_fast invalidates a root, a vCPU reloading its MMU takes a "
        "reference to it again. It runs on a root the worker is emptying: every fault on it "
        "is abandoned as stale (a livelock), and the load itself breaks invariant 3 (WARN)."),
    Bug("free-page-table-without-rcu",
        "a zapped page-table page is freed at once instead of after a grace period",
        "KVM: x86/mmu: Free page table pages through RCU (tdp_mmu_free_sp_rcu_callback), "
        "needed by lockless walkers such as fast_page_fault()",
        "use-after-free", "mmu_notifier",
        "A fast page fault walks the paging structure under rcu_read_lock only. A zap "
        "frees a page table it is standing on, and the walker reads freed memory.",
        strategy="pct"),
    Bug("non-atomic-shared-zap",
        "the shared zap writes SPTEs with plain stores under the read lock",
        "KVM: x86/mmu: tdp_mmu_set_spte_atomic() (5.12): SPTE changes under the read "
        "lock must be compare-exchanges",
        "data-race", "memslot_churn",
        "The zap worker holds mmu_lock for read, as does a faulting vCPU. A plain store "
        "from the zap and the fault's compare-exchange race on the same SPTE."),
    Bug("worker-zap-without-mmu-lock",
        "the zap worker zaps without taking mmu_lock",
        "tdp_mmu_zap_root_work() takes read_lock(&kvm->mmu_lock) around the zap and "
        "kvm_tdp_mmu_put_root() asserts it (kvm_lockdep_assert_mmu_lock_held)",
        "warn", "memslot_churn",
        "The worker tears the root down with no lock while zap_all_fast or a vCPU "
        "works on it under mmu_lock. Nothing orders their accesses to the roots list; the "
        "model sees the worker drop a lock it never took when the zap yields (bad-unlock) and "
        "the work return with it held (warn)."),
    Bug("skip-invalid-roots-on-notifier",
        "a host invalidation zaps only valid roots",
        "KVM: x86/mmu: Zap _all_ roots when unmapping gfn range in TDP MMU (late 2021)",
        "use-after-free", "mmu_notifier",
        "A vCPU still runs on an invalid root that still maps a gfn. The host unmaps and "
        "frees that page; the vCPU's next access goes to freed memory."),
    Bug("zap-without-yield",
        "the worker never yields mmu_lock while zapping",
        "tdp_mmu_iter_cond_resched(): zaps must yield when mmu_lock is contended or a "
        "reschedule is due",
        "latency", "max_guest_memory",
        "The worker holds mmu_lock for read for the whole zap of a large root. A host "
        "invalidation waiting for write holds back every faulting vCPU behind it."),
    Bug("zap-on-last-put",
        "the task that puts a root's last reference zaps the whole root itself",
        "KVM: x86/mmu: Zap defunct roots via asynchronous worker (5.18), the seed: before "
        "it, kvm_tdp_mmu_put_root() zapped inline with can_yield=false",
        "latency", "max_guest_memory",
        "A vCPU reloading its MMU drops the last reference to a big 4K-populated root and "
        "zaps it under mmu_lock for read, without yielding. A host invalidation waiting for "
        "write, and every vCPU queued behind it, waits for the whole zap."),
    Bug("zap-root-in-one-pass",
        "a root is zapped in one pass from the top level",
        "KVM: x86/mmu: Zap roots in two passes to avoid inducing RCU stalls (5.18)",
        "latency", "max_guest_memory",
        "Zapping top-level entries first tears down 512 GiB subtrees in one step. No "
        "yield is possible inside a step, so the RCU read section and the lock hold grow "
        "with guest memory."),
)

BY_NAME = {b.name: b for b in CATALOGUE}


class UnknownBug(ValueError):
    """A bug name not in the catalogue."""


def check_bug_names(names: Iterable[str]) -> frozenset[str]:
    """Validate ``bugs=`` of the model; an unknown name lists the known ones."""
    if isinstance(names, str):
        names = [names]
    out = frozenset(names)
    unknown = sorted(out - BY_NAME.keys())
    if unknown:
        raise UnknownBug(f"unknown bug(s) {', '.join(unknown)}; known: "
                         f"{', '.join(b.name for b in CATALOGUE)}")
    return out
