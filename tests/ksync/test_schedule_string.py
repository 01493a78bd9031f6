"""The schedule string: run-length encoded thread ids that decode to the same list."""

from __future__ import annotations

import random

import pytest

from ksync import KsyncError
from ksync.strategy import decode_schedule, encode_schedule


def test_the_documented_format():
    assert encode_schedule([0] * 12 + [1] + [0] * 3) == "0x12.1.0x3"
    assert encode_schedule([]) == "" and decode_schedule("") == []
    assert encode_schedule([7]) == "7" and encode_schedule([3, 3]) == "3x2"


@pytest.mark.parametrize("seed", range(20))
def test_any_decision_list_round_trips(seed):
    rng = random.Random(seed)
    for _ in range(50):
        threads = rng.randrange(1, 25)
        d = [rng.randrange(threads) for _ in range(rng.randrange(60))]
        s = encode_schedule(d)
        assert decode_schedule(s) == d
        # Run-length encoded: no two neighbouring tokens name the same thread.
        toks = [t.partition("x")[0] for t in s.split(".")] if s else []
        assert all(a != b for a, b in zip(toks, toks[1:], strict=False))


@pytest.mark.parametrize("bad", ["x3", "1.x", "1x0", "a", "1..2", "1x2x3"])
def test_an_unreadable_string_names_the_token(bad):
    with pytest.raises(KsyncError, match="token"):
        decode_schedule(bad)
