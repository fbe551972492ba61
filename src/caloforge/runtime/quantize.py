"""Full INT8 of a generator: the calibration set (latent noise x primary energies over the
trained range) and NNCF post-training quantization of every layer with an INT8 kernel
(:func:`caloforge.ovgraph.quantize_layers`, the recipe the tuner's all-INT8 candidate uses too).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from caloforge.errors import UserError
from caloforge.facts import LATENT_DIM, TRAINED_ENERGY_RANGE_GEV
from caloforge.runtime.modelfile import LoadedModel, ModelSource, read_ov_model
from caloforge.runtime.noise import latent_noise, uniform_energies

if TYPE_CHECKING:  # pragma: no cover
    import openvino as ov


def calibration_inputs(n: int, energy_range: tuple[float, float] = TRAINED_ENERGY_RANGE_GEV,
                       seed: int = 0, batch: int = 1, latent_dim: int = LATENT_DIM
                       ) -> list[dict[str, np.ndarray]]:
    """The generator's calibration set: ``n`` events (``z`` (b, latent_dim) float32 N(0,1) noise,
    ``energy`` (b,) float32 GeV uniform over ``energy_range``), in input dicts of ``batch``
    events; reproducible from ``seed`` (:mod:`caloforge.runtime.noise`)."""
    if n <= 0:
        raise UserError(f"n {n}: the calibration set needs at least one event")
    z = latent_noise(seed, 0, n, latent_dim)
    e = uniform_energies(seed, 0, n, *energy_range).astype(np.float32)
    return [{"z": z[i:i + batch], "energy": e[i:i + batch]} for i in range(0, n, batch)]


@dataclass(frozen=True)
class Calibration:
    """INT8 calibration settings: ``samples`` events of :func:`calibration_inputs` over
    ``energy_range_gev`` (the trained range) from ``seed``; NNCF ``preset`` and activation
    range estimator ``range_estimator`` (:mod:`caloforge.ovgraph.calibrate`: ``minmax`` keeps
    the rare large activations of shower cores, NNCF's own ``mean_minmax`` clips them)."""

    samples: int = 200
    seed: int = 12345
    energy_range_gev: tuple[float, float] = TRAINED_ENERGY_RANGE_GEV
    preset: str = "performance"
    range_estimator: str = "minmax"

    def inputs(self, latent_dim: int = LATENT_DIM) -> list[dict[str, np.ndarray]]:
        return calibration_inputs(self.samples, self.energy_range_gev, self.seed,
                                  latent_dim=latent_dim)

    def params(self) -> dict[str, Any]:
        """The quantization parameters (:func:`caloforge.ovgraph.normalize_params`)."""
        return {"preset": self.preset, "range": self.range_estimator}

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["energy_range_gev"] = list(self.energy_range_gev)
        return d


def quantize_int8(model: ModelSource,
                  calibration: Calibration | None = None, ignored_scope: Any = None,
                  optimize: bool = True, **nncf_options: Any) -> ov.Model:
    """Full INT8 of an ``openvino.Model`` (or LoadedModel, or path; ``None``: the shipped
    model); returns a new ``openvino.Model`` with FakeQuantize nodes. ``ignored_scope`` (an
    ``nncf.IgnoredScope``) keeps layers in float.
    ``optimize``: apply the exact rewrites first (:func:`caloforge.ovgraph.optimize_model`;
    layer names of the upsampled convolutions then end in ``/folded``).

    Only the layers with INT8 kernels (convolutions, matrix products: their activation input
    and weights) are quantized; the quantizers NNCF also puts on the ``energy`` input, the
    shower-prior arithmetic (powers, divisions, products) and other elementwise ops are removed:
    8 bits there cost 11% of the shower energy at 100 GeV and gain nothing."""
    from caloforge.ovgraph import optimize_model, quantize_layers
    from caloforge.runtime.modelfile import check_interface

    if isinstance(model, LoadedModel):
        model = model.model
    elif model is None or isinstance(model, str | os.PathLike):
        model = read_ov_model(model).model
    cal = calibration or Calibration()
    if optimize:
        model = optimize_model(model)[0]
    latent = check_interface(model, "<model to quantize>")
    return quantize_layers(model, cal.inputs(latent), cal.params(), ignored_scope=ignored_scope,
                           **nncf_options)
