"""Argument parsing helpers shared by the sub-commands."""

from __future__ import annotations

import argparse
import math
import re
import sys
from typing import NoReturn

import numpy as np

from caloforge.errors import UserError


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (``caloforge simulate: error: ...``) and exit
    code 2, without the usage block. Sub-parsers inherit it (``add_subparsers`` uses the parent's
    class)."""

    _REWRITES = ((re.compile(r"invalid int value: (.*)"), r"expected an integer, got \1"),
                 (re.compile(r"invalid float value: (.*)"), r"expected a number, got \1"))

    def error(self, message: str) -> NoReturn:
        for pattern, repl in self._REWRITES:
            message = pattern.sub(repl, message)
        message = " ".join(message.split())  # argparse wraps some messages over lines
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_energies(text: str) -> np.ndarray:
    """Parse ``"10,50,100"`` into a float array of energies in GeV."""
    try:
        values = np.array([float(v) for v in text.split(",") if v.strip()], dtype=np.float64)
    except ValueError:
        raise UserError(f"--energies {text!r}: expected comma-separated numbers in GeV") from None
    if values.size == 0:
        raise UserError("--energies: no energy given")
    return values


def parse_range(text: str) -> tuple[float, float]:
    """Parse ``"2:500"`` into ``(2.0, 500.0)`` (GeV)."""
    try:
        lo, hi = (float(v) for v in text.split(":"))
    except ValueError:
        raise UserError(f"--energy-range {text!r}: expected LOW:HIGH in GeV, e.g. 2:500") from None
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise UserError(f"--energy-range {text!r}: LOW and HIGH must be finite numbers in GeV, not NaN or infinite")
    if not lo < hi:
        raise UserError(f"--energy-range {text!r}: LOW must be below HIGH")
    return lo, hi


def add_energy_arguments(parser: argparse.ArgumentParser, default_range: str = "2:500") -> None:
    """``--energies E1,E2,...`` (fixed energies) or ``--energy-range LO:HI`` (uniform)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--energies", help="comma-separated primary energies in GeV, cycled over events")
    group.add_argument("--energy-range", default=default_range,
                       help=f"primary energies uniform in LO:HI GeV (default {default_range})")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


#: Seeds are unsigned 64-bit integers (NumPy SeedSequence words; HDF5 attributes hold them).
SEED_MAX = 2**64 - 1


def seed_int(text: str) -> int:
    """argparse type of ``--seed``: an integer in 0..2**64-1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer in 0..2**64-1, got {text!r}") from None
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"expected an integer in 0..2**64-1, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = _float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def fraction_below(upper: float):  # type: ignore[no-untyped-def]
    """argparse type: a number in [0, upper)."""

    def parse(text: str) -> float:
        value = _float(text)
        if not 0 <= value < upper:
            raise argparse.ArgumentTypeError(f"must be in [0, {upper:g}), got {text}")
        return value

    return parse


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def stdout_closed() -> int:
    """After a BrokenPipeError on stdout (``caloforge info f | head``): point stdout at devnull
    so the interpreter's final flush does not fail too, and return exit code 1 (Python docs,
    "Note on SIGPIPE")."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (tests)
        pass
    finally:
        os.close(devnull)
    return 1
