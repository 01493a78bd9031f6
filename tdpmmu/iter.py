"""The TDP iterator: a pre-order walk of one root over a gfn range.

Kernel: struct tdp_iter, tdp_iter_start(), tdp_iter_next(),
tdp_iter_restart() in arch/x86/kvm/mmu/tdp_iter.c, and the
for_each_tdp_pte_min_level() / tdp_mmu_iter_cond_resched() pair in tdp_mmu.c.

The iterator visits every entry of every page it reaches, from the root down
to ``min_level``, in gfn order: an entry first, then (if it is a present
page-table link and the level is above ``min_level``) the entries of its
child.  It reads SPTEs without locks; each step down re-reads the entry, so a
page unlinked since the last read is not entered.

Yielding.  A walk that holds ``mmu_lock`` for long must let others in.  The
caller asks ``cond_resched(should_yield, flush)`` at each position, ``flush``
saying whether the walk changed SPTEs since its last yield (a TLB flush is
owed before ``mmu_lock`` is dropped); when that yields (the model flushes,
drops and retakes ``mmu_lock`` inside ``should_yield(flush)``), the next
step restarts from the root at ``next_last_level_gfn`` -- the first gfn not
yet handled -- because the tree may have changed while the lock was out.
``yielded_gfn`` remembers where the last yield happened, and no new yield is
allowed until the walk has moved past it (invariant 11: yield only after
progress), so a contended lock cannot livelock the walk.

Skipping absent entries.  A walker that does nothing at a non-present entry
(the zaps) may pass ``skip_absent=True``: after a non-present position at
which it offered a yield and was refused, the iterator jumps over the rest
of the page's run of non-present entries (one numpy scan of their low bytes)
to the next present one.  Nothing happens at a skipped position, and the
yield answer there could only be the refusal just given (no scheduling point
lies between), so the walk yields where the one-by-one walk would -- at
the first position after progress -- for a fraction of the steps.
"""

from tdpmmu.spte import KVM_PAGES_PER_HPAGE as _pages
from tdpmmu.spte import (
    LEAF,
    PG_LEVEL_4K,
    PRESENT,
    SPTE_ENT_PER_PAGE,
    SPTE_INDEX,
    gfn_round_for_level,
    low_bytes,
    root_gfn_end,
)


class TdpIter:
    """Iterator over the entries of ``root`` in [start, end) down to ``min_level``.

    Kernel: struct tdp_iter.  ``for pos in TdpIter(...)`` yields the iterator
    itself; the current position is in ``level``, ``gfn``, ``page``,
    ``index`` and ``old_spte`` (the value last read; refresh it with
    ``reread()`` after a failed compare-exchange).  Positions above
    ``min_level`` may start before ``start`` (an entry covering it).

    Not thread-safe: one walker owns an iterator.  Context: mmu_lock held
    (either mode) and inside an RCU read section, by the caller.

    ``skip_absent``: jump over runs of non-present entries once a yield was
    refused at one of them (see the module docstring); only for walkers that
    do nothing at a non-present entry and call ``cond_resched`` at every
    position.
    """

    __slots__ = ("root", "root_level", "min_level", "end", "path", "level", "gfn",
                 "page", "index", "old_spte", "next_last_level_gfn", "yielded_gfn",
                 "yielded", "valid", "_started", "_skip_absent", "_may_skip",
                 "_skip_restarted")

    def __init__(self, root, min_level, start, end, skip_absent=False):
        if not PG_LEVEL_4K <= min_level <= root.level:
            raise ValueError(f"TdpIter: min_level {min_level} outside 1..{root.level}")
        self.root = root
        self.root_level = root.level
        self.min_level = min_level
        self.end = min(end, root_gfn_end(root.level))
        self.path = [None] * (root.level + 1)
        self.path[root.level] = root
        self.next_last_level_gfn = max(start, 0)
        self._started = False
        self._skip_absent = skip_absent
        self._may_skip = False
        self._skip_restarted = False
        self.restart()
        if self.next_last_level_gfn >= self.end:
            # An empty range must not visit the entries that cover ``start``.
            self.valid = False

    def restart(self):
        """Walk again from the root towards ``next_last_level_gfn``.

        Kernel: tdp_iter_restart().
        """
        self.yielded = False
        self.yielded_gfn = self.next_last_level_gfn
        self.level = self.root_level
        self.page = self.root
        self.gfn = gfn_round_for_level(self.next_last_level_gfn, self.level)
        self._refresh()
        self.valid = True

    def _refresh(self):
        self.index = SPTE_INDEX(self.gfn, self.level)
        self.old_spte = self.page.read(self.index)

    def reread(self):
        """Re-read the current SPTE (after a lost compare-exchange)."""
        self.old_spte = self.page.read(self.index)
        return self.old_spte

    def _try_step_down(self):
        if self.level == self.min_level:
            return False
        # Re-read: the entry may have been zapped since the position was
        # reported, and a stale link must not be followed.
        spte = self.page.read(self.index)
        if not spte & PRESENT or spte & LEAF or self.level == PG_LEVEL_4K:
            return False
        child = self.page.child_at(self.index, spte)
        if child is None:
            return False
        self.level -= 1
        self.page = child
        self.path[self.level] = child
        self.gfn = gfn_round_for_level(self.next_last_level_gfn, self.level)
        self._refresh()
        return True

    def _try_step_side(self, may_skip=False):
        index = self.index
        if index == SPTE_ENT_PER_PAGE - 1:
            return False
        step = 1
        if may_skip and not self.old_spte & PRESENT:
            # Jump to the next present entry of this page; with none left,
            # pass the page's last entry too and let the walk step up.
            present = low_bytes(self.page.spt)[index + 1:] != 0
            j = int(present.argmax())           # the first True, if any
            if not present[j]:
                self.index = SPTE_ENT_PER_PAGE - 1
                self.gfn += (SPTE_ENT_PER_PAGE - 1 - index) * _pages(self.level)
                self.next_last_level_gfn = self.gfn
                return False
            step = j + 1
        self.gfn += step * _pages(self.level)
        self.next_last_level_gfn = self.gfn
        self.index = index = index + step
        self.old_spte = self.page.read(index)
        return True

    def _try_step_up(self):
        if self.level == self.root_level:
            return False
        self.level += 1
        self.page = self.path[self.level]
        self.gfn = gfn_round_for_level(self.gfn, self.level)
        self.index = SPTE_INDEX(self.gfn, self.level)
        self.old_spte = self.page.read(self.index)
        return True

    def next(self):
        """Advance to the next position.  Kernel: tdp_iter_next()."""
        may_skip = self._may_skip
        self._may_skip = False
        if self.yielded:
            self.restart()
            if self._skip_restarted and not self._try_step_side():
                # The 5.15 bug: the restart was followed by an ordinary step,
                # past the top-level entry and everything under it.
                self.valid = False
            return
        if self._try_step_down():
            return
        while True:
            if self._try_step_side(may_skip):
                return
            may_skip = False
            if not self._try_step_up():
                self.valid = False
                return

    def __iter__(self):
        return self

    def __next__(self):
        if self._started:
            self.next()
        else:
            self._started = True
        if not self.valid or self.gfn >= self.end:
            raise StopIteration
        return self

    def cond_resched(self, should_yield, flush=False):
        """Offer to yield; True when the walk yielded and will restart.

        Kernel: tdp_mmu_iter_cond_resched().  ``should_yield(flush)`` is only asked
        once the walk made progress since its last yield; when it returns True
        (after dropping and retaking mmu_lock), the caller must ``continue``
        so the next step restarts from the root at ``next_last_level_gfn``.
        """
        if should_yield is None:
            self._may_skip = self._skip_absent
            return False
        if self.next_last_level_gfn == self.yielded_gfn:
            return False
        if should_yield(flush):
            self.yielded = True
            self._skip_restarted = getattr(should_yield, "restart_skips", False)
        else:
            self._may_skip = self._skip_absent
        return self.yielded


def for_each_tdp_pte_min_level(root, min_level, start, end, skip_absent=False):
    """Kernel: for_each_tdp_pte_min_level().  Returns a TdpIter."""
    return TdpIter(root, min_level, start, end, skip_absent)
