"""Fixtures for the campaign tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .toyscenario import toy_scenarios


@pytest.fixture
def toys() -> Iterator[None]:
    with toy_scenarios():
        yield
