"""NNCF arguments and the one INT8 calibration recipe (used by the runtime's full INT8 and by
every candidate of the tuner).

Quantization parameters are a small JSON-able dict:

- ``preset``: ``"performance"`` (symmetric INT8 activations) or ``"mixed"`` (asymmetric
  activations, symmetric weights);
- ``range``: how an activation's quantization range is estimated from the calibration data:
  ``"minmax"`` (global minimum and maximum over all calibration samples), ``"mean_minmax"``
  (the mean over samples of each sample's minimum and maximum: NNCF's own default, which clips
  the rarest large activations), ``"histogram"`` (the range minimising the quantization error of
  the activations' histogram);
- ``bias_correction``: NNCF fast bias correction.

The recipe: :func:`calibrate` runs ``nncf.quantize`` once on the whole float model (weights may
be kept as FP32 constants behind FakeQuantize nodes, so a layer can be restored to float), then
:func:`caloforge.ovgraph.precisions.mark_precisions` keeps only the quantizers of the INT8
layers. :func:`quantize_layers` is both steps with every layer INT8.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from caloforge.errors import UserError
from caloforge.ovgraph.layers import find_layers
from caloforge.ovgraph.precisions import INT8, mark_precisions

if TYPE_CHECKING:  # pragma: no cover
    import openvino as ov

PRESETS = ("performance", "mixed")
RANGES = ("minmax", "mean_minmax", "histogram")
DEFAULT_QUANT_PARAMS: Mapping[str, Any] = MappingProxyType(
    {"preset": "performance", "range": "minmax", "bias_correction": False})
"""The quantization parameters used when none are given (symmetric, min/max ranges: the cell
energies span orders of magnitude and ``mean_minmax`` clips the shower cores)."""
#: Version of :func:`calibrate`'s recipe beyond its parameters (part of the INT8 cache key):
#: 2 = table lookups (``Gather``) stay in float.
RECIPE_VERSION = 2


def normalize_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """``params`` completed with :data:`DEFAULT_QUANT_PARAMS` and checked (UserError naming
    ``preset`` or ``range``)."""
    out = dict(DEFAULT_QUANT_PARAMS)
    out.update(params or {})
    if out["preset"] not in PRESETS:
        raise UserError(f"preset {out['preset']!r}: unknown quantization preset; "
                        f"choose from {', '.join(PRESETS)}")
    if out["range"] not in RANGES:
        raise UserError(f"range {out['range']!r}: unknown activation range estimator; "
                        f"choose from {', '.join(RANGES)}")
    out["bias_correction"] = bool(out["bias_correction"])
    return out


def describe_params(params: Mapping[str, Any]) -> str:
    """Short text, e.g. ``"performance/minmax"`` (``+bc`` with bias correction)."""
    text = f"{params.get('preset', '?')}/{params.get('range', '?')}"
    return text + ("+bc" if params.get("bias_correction") else "")


def nncf_arguments(params: Mapping[str, Any] | None, *, keep_weights: bool = False
                   ) -> dict[str, Any]:
    """Keyword arguments for ``nncf.quantize`` (``preset``, ``advanced_parameters``) for ``params``.

    ``keep_weights``: keep FP32 weights behind FakeQuantize nodes (OpenVINO backend) so that a
    layer can be restored to float later. Also quiets NNCF's INFO logging.
    """
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    nncf.set_log_level(logging.ERROR)  # its INFO lines are not for our users
    p = normalize_params(params)
    preset = {"performance": nncf.QuantizationPreset.PERFORMANCE,
              "mixed": nncf.QuantizationPreset.MIXED}[p["preset"]]
    estimators = {"minmax": RangeEstimatorParametersSet.MINMAX,
                  "mean_minmax": RangeEstimatorParametersSet.MEAN_MINMAX,
                  "histogram": RangeEstimatorParametersSet.HISTOGRAM}
    advanced = AdvancedQuantizationParameters(
        disable_bias_correction=not p["bias_correction"],
        activations_range_estimator_params=estimators[p["range"]],
        backend_params={"compress_weights": False} if keep_weights else {},
    )
    return {"preset": preset, "fast_bias_correction": True, "advanced_parameters": advanced}


def _with_tables_ignored(scope: Any, model: ov.Model) -> Any:
    """``scope`` (an ``nncf.IgnoredScope`` or None) with every ``Gather`` added where ``model``
    has one (the caller's ``validate`` kept; the 3DGAN has none). Why: a table
    lookup has no INT8 kernel, but NNCF takes a Gather from a constant for an embedding and
    stores its table in 8 bits per row. The phase generator's layer-energy library is such a
    table: each row holds one MC event's 25 layer fractions, from ~0.2 in the shower core to
    ~1e-7 in the first and last layers, so the per-row scale (row maximum / 127) rounded the
    small layers to exactly zero (in 3,000 showers of the shipped model 2,943 of 73,302
    layers with energy came out empty: layers 0-2 and 20-24)."""
    import nncf

    if not any(op.get_type_name() == "Gather" for op in model.get_ops()):
        return scope
    if scope is None:
        return nncf.IgnoredScope(types=["Gather"])
    return nncf.IgnoredScope(names=list(scope.names), patterns=list(scope.patterns),
                             types=sorted({*scope.types, "Gather"}),
                             subgraphs=list(scope.subgraphs), validate=scope.validate)


@dataclass(frozen=True)
class Calibrated:
    """A fully quantized model (FakeQuantize wherever NNCF put one) and the constants NNCF
    changed (name -> original value: biases it corrected)."""

    model: ov.Model
    changed: Mapping[str, np.ndarray]


def calibrate(model: ov.Model, samples: Sequence[Mapping[str, np.ndarray]],
              params: Mapping[str, Any] | None = None, *, keep_weights: bool = True,
              model_type: Any = None, ignored_scope: Any = None,
              **nncf_options: Any) -> Calibrated:
    """NNCF post-training calibration of a float ``model`` on ``samples`` (input dicts, each one
    model call; all are used). ``model`` is not changed. ``ignored_scope``: an
    ``nncf.IgnoredScope``; ``nncf_options``: further ``nncf.quantize`` arguments."""
    import nncf

    if not samples:
        raise UserError("samples: the calibration set is empty")
    kwargs: dict[str, Any] = {"subset_size": len(samples), "model_type": model_type,
                              **nncf_arguments(params, keep_weights=keep_weights), **nncf_options}
    scope = _with_tables_ignored(ignored_scope, model)
    if scope is not None:
        kwargs["ignored_scope"] = scope
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = nncf.quantize(model.clone(), nncf.Dataset(list(samples)), **kwargs)
    original = {op.get_friendly_name(): op for op in model.get_ops()
                if op.get_type_name() == "Constant"}
    changed: dict[str, np.ndarray] = {}
    for op in quantized.get_ops():
        name = op.get_friendly_name()
        if op.get_type_name() == "Constant" and name in original:
            before = original[name].get_data()
            after = op.get_data()
            if before.shape != after.shape or not np.array_equal(before, after):
                changed[name] = np.array(before, copy=True)
    return Calibrated(quantized, changed)


def realise(calibrated: Calibrated, precisions: Mapping[str, str]) -> ov.Model:
    """A new model from ``calibrated`` running each layer in ``precisions`` (name -> precision)."""
    model = calibrated.model.clone()
    mark_precisions(model, precisions, calibrated.changed)
    return model


def quantize_layers(model: ov.Model, samples: Sequence[Mapping[str, np.ndarray]],
                    params: Mapping[str, Any] | None = None, *, keep_weights: bool = False,
                    **options: Any) -> ov.Model:
    """Full INT8: :func:`calibrate`, then every layer of :func:`~caloforge.ovgraph.layers.find_layers`
    INT8 and every other quantizer removed (the energy input, elementwise arithmetic: they have
    no INT8 kernel and 8 bits there cost accuracy). The tuner's all-INT8 candidate is the same."""
    calibrated = calibrate(model, samples, params, keep_weights=keep_weights, **options)
    return realise(calibrated, {layer.name: INT8 for layer in find_layers(model)})
