"""Helpers for the command-line tests."""

from __future__ import annotations

from tdpmmu.cli import main


def exit_code(argv: list[str]) -> int:
    """``main``'s status, also when argparse exits for a malformed option."""
    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code)
