"""Shared runs for the teaching tests: small traced programs, each made once per module."""

from __future__ import annotations

import pytest

from tdpmmu.teach.lab_programs import run_program, shared_root_then_memslot_delete


def memslot_delete(seed: int = 1, bugs: tuple[str, ...] = (), zap: str = "async"):
    """Two vCPUs share a root, main deletes the memslot (the lab 2/3 program)."""
    return run_program("test", shared_root_then_memslot_delete, seed=seed, zap=zap,
                       bugs=bugs, pages=8, vcpus=2)


@pytest.fixture(scope="module")
def clean_run():
    return memslot_delete(seed=1)


@pytest.fixture(scope="module")
def deadlock_run():
    return memslot_delete(seed=1, bugs=("flush-under-mmu-lock",))
