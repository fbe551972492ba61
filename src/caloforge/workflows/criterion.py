"""The generator's tuning criterion: which metrics, which tolerances, and how a user writes them.

A criterion is a list of :class:`MetricSpec` (a metric *family* or one metric, and a tolerance);
:func:`resolve` turns it into the :class:`caloforge.quant.Metric` list the tuner checks, once the
objective knows the energies of its bins and the FPD floor.

Metric families of the generator (``caloforge.workflows.objective_physics`` computes them):

=============  ==========================================================  =========
family         metric(s)                                                   direction
=============  ==========================================================  =========
``3dgan``      the 3DGAN shape metric against the reference sample         lower
``response``   ``response@EGeV``: mean(E_cal / E) per energy bin            either way
``width``      ``width@EGeV``: std / mean of E_cal / E per energy bin       either way
``hits``       ``hits@EGeV``: mean number of cells above 10 keV per bin     either way
``fpd``        paired FPD of candidate vs FP32 showers (same noise)         lower
=============  ==========================================================  =========

(``E_cal = sum_l E_l / f_l``, the detector's per-layer sampling fractions: the physics layer's
energy scan.) ``response`` etc. name every energy bin; ``response@6`` or ``response@6GeV`` one.

Tolerance syntax (``--criterion NAME:TOL``, and the ``tolerance`` of a criterion file):
``1%`` relative to the FP32 value; ``0.005`` or ``0.005abs`` absolute, in the metric's units;
``floor`` (FPD only) the FP32-vs-FP32 floor measured on independent noise. ``default`` alone
stands for :data:`DEFAULT_CRITERION`. Later entries override earlier ones for the same metric.

File (TOML or JSON), e.g. ``criterion.toml``::

    metric = [
      {name = "default"},
      {name = "response@6GeV", tolerance = "1%"},
    ]
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caloforge.errors import UserError
from caloforge.quant import Metric
from caloforge.quant.objective import LOWER, TWO_SIDED

THREEDGAN = "3dgan"
FPD = "fpd"
PER_ENERGY = ("response", "width", "hits")
FAMILIES = {THREEDGAN: LOWER, "response": TWO_SIDED, "width": TWO_SIDED, "hits": TWO_SIDED,
            FPD: LOWER}
FLOOR = "floor"


@dataclass(frozen=True)
class MetricSpec:
    """``name``: a family (every bin) or ``family@E`` (one bin, GeV); ``tolerance``: a fraction
    of the FP32 value (``relative``), metric units, or ``None`` with ``floor`` (FPD)."""

    name: str
    tolerance: float | None
    relative: bool = True
    floor: bool = False


DEFAULT_CRITERION: tuple[MetricSpec, ...] = (
    MetricSpec(THREEDGAN, 0.01),
    MetricSpec("response", 0.005),
    MetricSpec("width", 0.05),
    MetricSpec("hits", 0.02),
    MetricSpec(FPD, None, relative=False, floor=True),
)
"""The 3DGAN metric within 1% of FP32; per energy bin the calibrated response within 0.5%, its
width within 5% and the hits within 2% of FP32; the paired FPD within the FP32-vs-FP32 floor."""

_TOL = re.compile(r"^\s*([0-9.eE+-]+)\s*(%|abs)?\s*$")


def parse_tolerance(text: str, what: str) -> tuple[float | None, bool, bool]:
    """``(tolerance, relative, floor)`` of ``1%`` / ``0.005`` / ``0.005abs`` / ``floor``."""
    t = text.strip().lower()
    if t == FLOOR:
        return None, False, True
    m = _TOL.match(t)
    try:
        value = float(m.group(1)) if m else math.nan
    except ValueError:
        value = math.nan
    if m is None or not math.isfinite(value) or value < 0:
        raise UserError(f"{what}: tolerance {text!r}: expected a number >= 0 followed by % "
                        "(relative to FP32) or nothing/abs (absolute), or 'floor' (fpd)")
    if m.group(2) == "%":
        return value / 100.0, True, False
    return value, False, False


def _family(name: str, what: str) -> str:
    family = name.split("@", 1)[0]
    if family not in FAMILIES:
        raise UserError(f"{what}: unknown metric {name!r}; choose from "
                        f"{', '.join(FAMILIES)} (per energy: response@6GeV, ...) or 'default'")
    if "@" in name and family not in PER_ENERGY:
        raise UserError(f"{what}: {family!r} has no energy bins")
    return family


def _spec(name: str, tol: str, what: str) -> MetricSpec:
    name = name.strip().lower()
    _family(name, what)
    tolerance, relative, floor = parse_tolerance(tol, what)
    if floor and name != FPD:
        raise UserError(f"{what}: 'floor' is a tolerance of fpd only")
    return MetricSpec(name, tolerance, relative, floor)


def parse_criterion(items: Iterable[str], what: str = "criterion") -> list[MetricSpec]:
    """``["default", "response@6:1%", "fpd:floor", ...]`` -> specs (``NAME:TOL``)."""
    specs: list[MetricSpec] = []
    for item in items:
        if item.strip().lower() == "default":
            specs.extend(DEFAULT_CRITERION)
            continue
        name, sep, tol = item.partition(":")
        if not sep or not name.strip():
            raise UserError(f"{what} {item!r}: expected NAME:TOLERANCE (e.g. 3dgan:1%, "
                            "response@6GeV:0.5%, fpd:floor) or 'default'")
        specs.append(_spec(name, tol, f"{what} {item!r}"))
    if not specs:
        raise UserError(f"{what}: no metric given")
    return specs


def load_criterion_file(path: str | os.PathLike[str]) -> list[MetricSpec]:
    """Specs from a TOML (``.toml``) or JSON file: ``metric = [{name, tolerance}, ...]``."""
    p = Path(path)
    try:
        text = p.read_bytes()
    except OSError as exc:
        raise UserError(f"{p}: cannot read ({exc.strerror or exc})") from None
    try:
        if p.suffix.lower() == ".toml":
            import tomllib

            data: Any = tomllib.loads(text.decode("utf-8"))
        else:
            data = json.loads(text.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{p}: not a valid {'TOML' if p.suffix.lower() == '.toml' else 'JSON'} "
                        f"criterion file ({str(exc).splitlines()[0]})") from None
    entries = data.get("metric") if isinstance(data, Mapping) else None
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{p}: expected a non-empty list 'metric' of {{name, tolerance}} tables")
    items = []
    for i, e in enumerate(entries):
        if not isinstance(e, Mapping) or "name" not in e or set(e) - {"name", "tolerance"}:
            raise UserError(f"{p}: metric {i + 1}: expected keys name and tolerance, got "
                            f"{sorted(e) if isinstance(e, Mapping) else type(e).__name__}")
        name = str(e["name"])
        if name.strip().lower() == "default":
            items.append("default")
            continue
        if "tolerance" not in e:
            raise UserError(f"{p}: metric {i + 1} ({name}): no tolerance")
        tol = e["tolerance"]
        tol_text = str(tol) if not isinstance(tol, bool) and isinstance(tol, int | float | str) \
            else "?"
        items.append(f"{name}:{tol_text}")
    return parse_criterion(items, str(p))


def energy_name(family: str, energy: float) -> str:
    """``response@6GeV``."""
    return f"{family}@{energy:g}GeV"


def _matches(spec: MetricSpec, family: str, energy: float | None) -> bool:
    if "@" not in spec.name:
        return spec.name == family
    fam, _, e = spec.name.partition("@")
    e = e.removesuffix("gev")
    try:
        return fam == family and energy is not None and math.isclose(float(e), energy,
                                                                   rel_tol=1e-6)
    except ValueError:
        return False


def needs(specs: Sequence[MetricSpec], family: str) -> bool:
    """Does the criterion use ``family`` (in any bin)?"""
    return any(s.name.split("@", 1)[0] == family for s in specs)


def resolve(specs: Sequence[MetricSpec], energies: Sequence[float], fpd_floor: float | None
            ) -> list[Metric]:
    """The tuner's metrics, in catalogue order (3dgan, per-energy families by energy, fpd): the
    last spec naming a metric sets its tolerance. A bin name matching no energy is an error."""
    for s in specs:
        if "@" in s.name and not any(_matches(s, s.name.split("@")[0], e) for e in energies):
            raise UserError(f"criterion {s.name}: no such energy bin (the bins are "
                            f"{', '.join(f'{e:g}' for e in energies)} GeV)")
    slots: list[tuple[str, str, float | None]] = [(THREEDGAN, THREEDGAN, None)]
    for fam in PER_ENERGY:
        slots += [(fam, energy_name(fam, e), e) for e in energies]
    slots.append((FPD, FPD, None))
    out = []
    for family, name, energy in slots:
        chosen = [s for s in specs if _matches(s, family, energy)]
        if not chosen:
            continue
        s = chosen[-1]
        if s.floor:
            if fpd_floor is None or not math.isfinite(fpd_floor):
                raise UserError("criterion fpd:floor: the FP32-vs-FP32 floor is unknown")
            # 3 significant digits: the floor is part of the criterion a resume compares, and
            # the last bits of an f32 run may differ with the thread count
            out.append(Metric(name, float(f"{fpd_floor:.3g}"), relative=False,
                              direction=FAMILIES[family]))
        else:
            out.append(Metric(name, float(s.tolerance or 0.0), s.relative, FAMILIES[family]))
    return out


__all__ = ["DEFAULT_CRITERION", "FAMILIES", "MetricSpec", "energy_name", "load_criterion_file",
           "needs", "parse_criterion", "parse_tolerance", "resolve"]
