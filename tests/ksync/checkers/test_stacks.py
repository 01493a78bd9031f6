"""Saved stacks: the cached capture gives exactly what a full walk gives.

Two captures on one source line differ in the innermost frame's raw offset
(they are different calls), so they are compared as rendered lines.
"""

from __future__ import annotations

import sys

from ksync.checkers import _stacks


def _leaf():
    return _stacks.capture_cached(1, 8), _stacks.capture(1, 8)


def _caller_a():
    return _leaf()


def _caller_b():
    return _leaf()


def test_capture_cached_equals_a_full_walk_across_callers():
    for f in (_caller_a, _caller_b, _caller_a, _caller_a, _leaf, _caller_b):
        cached, full = f()
        assert _stacks.render(cached) == _stacks.render(full) and len(full) >= 4


def test_capture_cached_follows_a_generator_resumed_from_different_callers():
    def gen():
        while True:
            yield _leaf()
    g = gen()

    def resume_1():
        return next(g)

    def resume_2():
        return next(g)
    for f in (resume_1, resume_2, resume_1, resume_1, resume_2):
        cached, full = f()
        assert _stacks.render(cached) == _stacks.render(full)
        assert _stacks.frames(full)[2][2] == f.__name__


def test_rendering_and_kasan_function_names():
    cached, _full = _caller_a()
    lines = _stacks.render(cached)
    assert lines[0].endswith(" _leaf") and lines[1].endswith(" _caller_a")
    assert _stacks.top_function(cached) == "_leaf"
    site, one = _stacks.capture_site(1), _stacks.capture(1, 1)
    assert _stacks.render(site) == _stacks.render(one) and _stacks.top(site).endswith(" test_rendering_and_kasan_function_names")



def _stack_and_caller_lines():
    stack = _stacks.capture(1, 4)
    f, lines = sys._getframe(1), []
    while f is not None and len(lines) < 3:
        lines.append(f.f_lineno)
        f = f.f_back
    return stack, lines


def test_offsets_resolve_to_the_lines_f_lineno_gives():
    stack, caller_lines = _stack_and_caller_lines()
    got = [ln for _fn, ln, _name in _stacks.frames(stack)]
    assert len(got) == 4 and got[1:] == caller_lines
