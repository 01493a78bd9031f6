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
    # ---- grown from upstream fixes to tdp_mmu.c / mmu.c (issue 15) ----
    Bug("root-not-freed-after-yield",
        "the root iterator drops its reference without freeing a root it was the last user of",
        "KVM: x86/mmu: Ensure TDP MMU roots are freed after yield (5.11): the yield-safe "
        "root iterator put the previous root with a bare decrement, so a root whose last "
        "reference it held was never freed",
        "warn", "root_reload_storm",
        "Enabling dirty logging walks every valid root under mmu_lock for read, holding a "
        "reference to the root it is on. A vCPU reloading its MMU puts its own reference to "
        "that root meanwhile, so the walker's put is the last one. The walker only "
        "decrements: the root stays on tdp_mmu_roots at count zero, unreachable and never "
        "freed, and teardown WARNs about roots and page-table pages left at uninit.",
        zap="sync", params=(("reloads", 8), ("toggles", 8))),
    Bug("fault-on-invalid-root",
        "a page fault installs SPTEs in a root that a memslot update has just invalidated",
        "KVM: x86/mmu: Retry page fault if root is invalidated by memslot update (5.16): "
        "is_page_fault_stale() checks is_obsolete_sp() on the vCPU's root after taking "
        "mmu_lock",
        "warn", "memslot_churn",
        "A vCPU passes its request check and faults. Before it takes mmu_lock, a memslot "
        "delete invalidates every root and the worker zaps the vCPU's root past the faulting "
        "gfn. The fault does not notice the root is invalid and maps the gfn into it. When "
        "the vCPU drops the root its last put frees it while it still maps memory (WARN), "
        "and the page tables under it leak."),
    Bug("zap-all-skips-top-level-sptes",
        "zapping a whole root skips top-level entries that reach past the host's MAXPHYADDR",
        "KVM: x86/mmu: Don't leak non-leaf SPTEs when zapping all SPTEs (5.16): the "
        "zap-all flows passed the host's max gfn as the end, and non-leaf SPTEs whose range "
        "went past it were not zapped",
        "warn", "teardown",
        "The VM uses 5-level paging on a host with 46 physical address bits: one top-level "
        "entry covers 256 TiB, more than the host can address. The zap of a root clears "
        "everything below the top level, then leaves the top-level entry and its 512 GiB "
        "tables linked. The root is freed still pointing at them (WARN) and teardown finds "
        "page-table pages left.",
        zap="sync", params=(("root_level", 5),)),
    Bug("root-iter-filters-address-space",
        "zapping invalidated roots visits only address space 0, leaving SMM roots behind",
        "KVM: x86/mmu: Do not filter address spaces in for_each_tdp_mmu_root_yield_safe() "
        "(6.6): kvm_tdp_mmu_zap_invalidated_roots() must see the roots of every address "
        "space",
        "warn", "teardown",
        "Under the 6.6 scheme the MMU holds its own reference to every valid root until "
        "the root is invalidated and zapped. The zap of invalidated roots walks address "
        "space 0 only, so an SMM vCPU's root keeps the MMU's reference forever. At uninit "
        "the same walk skips it again, and kvm_mmu_uninit_tdp_mmu() WARNs about the root "
        "and its page tables.",
        zap="preserve"),
    Bug("zap-invalidated-assumes-reference",
        "the zap of invalidated roots puts a reference on every invalid root, including "
        "ones it never took",
        "KVM: x86/mmu: Zap invalidated roots via asynchronous worker (5.18) fixed the "
        "latent issue that kvm_tdp_mmu_zap_invalidated_roots() assumed it owned a "
        "reference to all invalid roots; only the roots the invalidation gifted may be put",
        "use-after-free", "memslot_churn",
        "A halted vCPU keeps the root it loaded and handles no request; a memslot delete "
        "invalidates that root, and the zap puts only the reference the invalidation took. The "
        "next "
        "memslot change walks every invalid root and puts one reference on each, including "
        "that one: it steals the vCPU's reference and frees the root under it. The vCPU's own "
        "put at teardown touches freed memory.",
        zap="sync", params=(("halted_vcpus", 1),)),
    Bug("plain-store-of-volatile-spte",
        "clearing the dirty log write-protects SPTEs with plain stores under mmu_lock for write",
        "KVM: x86/mmu: Use atomic XCHG to write TDP MMU SPTEs with volatile bits (5.19): "
        "a fast page fault changes writable/dirty bits without mmu_lock, so even the "
        "write-locked paths must update such SPTEs atomically",
        "data-race", "dirty_log",
        "KVM_GET_DIRTY_LOG write-protects the harvested gfns under mmu_lock for write with "
        "a read and a plain store. A vCPU's fast page fault, which takes no lock, sets the "
        "writable and dirty bits of the same SPTE with a compare-exchange between the read "
        "and the store, and the store throws its update away: a dirty page the next harvest "
        "misses. The race detector sees the plain store and the compare-exchange unordered."),
    Bug("iter-advances-after-restart",
        "after yielding, the TDP iterator restarts at the root and then steps past the entry",
        "KVM: x86/mmu: Don't advance iterator after restart due to yielding (5.15): "
        "tdp_iter_next() after a restart skipped the top-level SPTE and everything under it",
        "use-after-free", "mmu_notifier",
        "A host unmap spans two 2M regions. Its zap yields mmu_lock at the second one and "
        "restarts from the root, but the next step moves past the whole top-level entry. "
        "The rest of the range is never zapped; the host frees those pages while SPTEs still "
        "map them, and the next touch of those mappings is an access to freed memory.",
        params=(("pages_per_gib", 1024), ("unmap_pages", 1024))),
    Bug("notifier-unmap-without-root-ref",
        "the mmu notifier's unmap walks the roots without holding references while it yields",
        "KVM: x86/mmu: Use yield-safe TDP MMU root iter in MMU notifier unmapping (5.15): "
        "the unmap zapped with yielding allowed but walked the roots with the iterator that "
        "takes no reference",
        "use-after-free", "teardown",
        "A host unmap across a 2M boundary zaps a vCPU's root and yields mmu_lock between "
        "the two regions. The vCPU reloads meanwhile and puts the root's last reference: the "
        "root is unlinked, zapped and freed after a grace period. The unmap retakes mmu_lock "
        "and carries on walking the freed root.",
        zap="sync", strategy="pct",
        params=(("vcpus", 4), ("unmap_offset", 508), ("unmap_pages", 8))),
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
