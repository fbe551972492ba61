"""Argument parsing helpers shared by the sub-commands."""

from __future__ import annotations

import argparse

import numpy as np

from caloforge.errors import UserError


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
