"""What the subcommands share: exit codes, usage errors, JSON output, common options."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

EXIT_CLEAN = 0
EXIT_FOUND = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


def print_json(doc: Any) -> None:
    """One JSON document on stdout (the ``--json`` contract of DESIGN.md)."""
    json.dump(doc, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0, with a one-line error otherwise."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"{n} is negative; give a count >= 0")
    return n


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    n = non_negative_int(text)
    if n == 0:
        raise argparse.ArgumentTypeError("0 is not allowed here; give a count >= 1")
    return n
