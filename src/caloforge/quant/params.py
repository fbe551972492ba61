"""Quantization parameters: what NNCF is asked to do, and which sets the tuner tries.

A parameter set is a small JSON-able dict (part of every :class:`~caloforge.quant.config.Config`)
with the keys ``preset``, ``range`` and ``bias_correction``, defined in
:mod:`caloforge.ovgraph.calibrate` (the one calibration recipe).

Why the range matters for showers: the cell energies span many orders of magnitude and the
largest activations are the shower cores of the highest-energy events. ``mean_minmax`` clips
them, which the physics metric punishes (on the shipped generator all-INT8 scores 0.092 with
``mean_minmax`` but 0.069 with ``minmax`` or ``histogram``, FP32 0.067). Which set is best
depends on the model, so the tuner tries several (:data:`DEFAULT_PARAM_SETS`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from caloforge.errors import UserError
from caloforge.ovgraph.calibrate import (
    DEFAULT_QUANT_PARAMS,
    PRESETS,
    RANGES,
    describe_params,
    nncf_arguments,
    normalize_params,
)

__all__ = ["DEFAULT_PARAM_SETS", "PRESETS", "RANGES", "candidate_sets", "describe",
           "nncf_arguments", "normalize", "param_sets"]

normalize = normalize_params
describe = describe_params

DEFAULT_PARAM_SETS: tuple[dict[str, Any], ...] = (
    dict(DEFAULT_QUANT_PARAMS),  # performance / minmax
    {"preset": "performance", "range": "histogram", "bias_correction": False},
    {"preset": "mixed", "range": "minmax", "bias_correction": False},
    {"preset": "mixed", "range": "histogram", "bias_correction": False},
    {"preset": "performance", "range": "mean_minmax", "bias_correction": False},
)
"""Parameter sets the tuner tries by default, in this order (ties go to the earlier one)."""


def param_sets(params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """The candidate parameter sets for a tuning run: the defaults (``None``), one set (a mapping)
    or several (a sequence), each normalised; duplicates removed, order kept."""
    if params is None:
        raw: Sequence[Mapping[str, Any]] = DEFAULT_PARAM_SETS
    elif isinstance(params, Mapping):
        raw = [params]
    else:
        raw = list(params)
    if not raw:
        raise UserError("params: no quantization parameter set to try")
    out: list[dict[str, Any]] = []
    for p in raw:
        n = normalize(p)
        if n not in out:
            out.append(n)
    return out


def candidate_sets(preset: str | None = None, range_estimator: str | None = None,
                   bias_correction: bool = False) -> list[dict[str, Any]]:
    """The default sets restricted to a ``preset`` and/or ``range_estimator`` (``None``: any);
    with both given, exactly that set. ``bias_correction`` applies to every set."""
    if preset is not None and range_estimator is not None:
        sets: list[dict[str, Any]] = [{"preset": preset, "range": range_estimator}]
    else:
        sets = [dict(p) for p in DEFAULT_PARAM_SETS
                if preset in (None, p["preset"]) and range_estimator in (None, p["range"])]
        if not sets:  # e.g. mixed + mean_minmax is not among the defaults
            sets = [{"preset": preset or "performance", "range": range_estimator or "minmax"}]
    return param_sets([{**p, "bias_correction": bias_correction} for p in sets])
