"""Review of the campaign-throughput changes (carriers, the eventfd baton,
one khungtaskd, stackless runs, per-kind dispatch): behaviour each of them
must keep, pinned where a review found it broken.
"""

from __future__ import annotations

import contextvars
import decimal

import pytest

from ksync import Runtime

pytestmark = pytest.mark.timeout(30)


# ---------------------------------------------------------------- carriers
_CV = contextvars.ContextVar("review_cv", default="fresh")


@pytest.mark.parametrize("mode", ["free", "controlled"])
def test_a_managed_thread_starts_with_fresh_context_variables_on_a_reused_carrier(mode):
    # A new OS thread starts with an empty contextvars context (and so the
    # default decimal context); a reused carrier must not hand the last
    # run's values to the next one, or a run depends on which carrier it got.
    seen: list[tuple[str, int]] = []

    def body():
        seen.append((_CV.get(), decimal.getcontext().prec))
        _CV.set("left by an earlier run")
        decimal.getcontext().prec = 5

    for _ in range(3):
        with Runtime(mode=mode, checks=()) as rt:
            rt.spawn(body).join()
    default_prec = decimal.Context().prec
    assert seen == [("fresh", default_prec)] * 3
