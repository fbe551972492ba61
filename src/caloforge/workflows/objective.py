"""The objective for tuning the 3DGAN generator: calibration inputs and the physics metric.

The adapter between the generic tuner (:mod:`caloforge.quant`, which never imports ``gan``,
``runtime``, ``physics`` or ``mc``) and the rest of caloforge.

- Calibration: ``calibration_size`` single-event inputs, latent noise N(0,1)^200 x primary
  energies uniform over the model's trained range (:func:`caloforge.runtime.calibration_inputs`,
  the runtime's full-INT8 calibration set too).
- Evaluation: showers generated at the reference sample's energies, with fixed latent noise (the
  same for every candidate, so the comparison with FP32 is not blurred by sampling noise), scored
  with the 3DGAN shape metric (``physics.ShapeMetric``, lower is better) against the reference.
- Reference: an HDF5 shower file (``reference``); without one a GFlash Monte Carlo sample is
  simulated at the metric's bin energies (:data:`BIN_ENERGIES_GEV`, ``reference_events``
  events, seeded).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from caloforge.data.manifest import sha256_file
from caloforge.errors import UserError
from caloforge.facts import LATENT_DIM
from caloforge.physics.shape_metric import DEFAULT_BINS
from caloforge.runtime.quantize import calibration_inputs

if TYPE_CHECKING:  # pragma: no cover
    import openvino as ov

BIN_ENERGIES_GEV: tuple[float, ...] = tuple(float(b) for b in DEFAULT_BINS if b is not None)
"""The 3DGAN metric's energy bins (GeV), from :data:`caloforge.physics.shape_metric.DEFAULT_BINS`."""

__all__ = ["BIN_ENERGIES_GEV", "GanObjective", "calibration_inputs", "gan_objective",
           "load_reference", "runtime_graph", "trained_energy_range"]


@dataclass
class GanObjective:
    """What :func:`caloforge.quant.tune` needs for the GAN: calibration inputs and ``evaluate``."""

    calibration: list[dict[str, np.ndarray]]
    evaluate: Callable[[ov.CompiledModel], float]
    n_reference: int
    energy_range: tuple[float, float]
    description: str


def trained_energy_range(model_path: str | os.PathLike[str] | None) -> tuple[float, float]:
    """The energy range (GeV) the generator was trained on: from the model file's manifest, else
    the shipped model's card (``None``: the shipped model). A corrupt manifest is a UserError."""
    from caloforge.runtime.generate import trained_range

    found = trained_range(model_path)
    if found is None and model_path is not None:  # a file without a manifest: the shipped card
        found = trained_range(None)
    if found is None:
        raise UserError(f"{model_path or 'shipped model'}: its trained energy range is unknown "
                        "(no manifest energy_range_gev, no model card)")
    return found


def load_reference(reference: str | os.PathLike[str] | None, max_events: int,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Reference showers ``(images (N,25,25,25) GeV, energies (N,) GeV)``."""
    if reference is not None:
        from caloforge.data.reader import read_showers

        return read_showers(reference, max_events)
    from caloforge.mc import sample_energies, simulate

    energies = sample_energies(max_events, energies=np.array(BIN_ENERGIES_GEV), seed=seed)
    images, energies = simulate(energies, seed=seed)[:2]
    return images, energies


def gan_objective(model_path: str | os.PathLike[str] | None = None,
                  reference: str | os.PathLike[str] | None = None,
                  calibration_size: int = 200, reference_events: int = 2000, seed: int = 0,
                  batch: int = 50, energy_range: tuple[float, float] | None = None) -> GanObjective:
    """Calibration set and evaluation function for a 3DGAN generator (ONNX inputs ``z``, ``energy``).

    ``reference_events`` caps the reference sample used (from the file) or sets its size (when
    simulated: 2000 events take a while; the CLI default simulates fewer).
    """
    from caloforge.physics import ShapeMetric
    from caloforge.runtime.noise import latent_noise

    if calibration_size <= 0:
        raise UserError(f"calibration_size {calibration_size}: must be positive")

    path = Path(model_path) if model_path is not None else None
    rng_e = energy_range or trained_energy_range(path)
    calibration = calibration_inputs(calibration_size, rng_e, seed)
    ref_images, ref_energies = load_reference(reference, reference_events, seed)
    metric = ShapeMetric((ref_images, ref_energies))
    energies = np.asarray(ref_energies, dtype=np.float32)
    z = latent_noise(seed + 1, 0, energies.size, LATENT_DIM)

    def evaluate(compiled: ov.CompiledModel) -> float:
        images = np.empty((energies.size, *ref_images.shape[1:]), dtype=np.float32)
        for start in range(0, energies.size, batch):
            stop = min(start + batch, energies.size)
            out = compiled({"z": z[start:stop], "energy": energies[start:stop]})
            images[start:stop] = np.asarray(out[0]).reshape(stop - start, *ref_images.shape[1:])
        return metric((images, energies.astype(np.float64)))

    source = str(reference) if reference is not None else f"GFlash MC ({energies.size} events)"
    return GanObjective(calibration, evaluate, int(energies.size), rng_e,
                        f"3DGAN shape metric vs {source}")


def runtime_graph(model_path: str | os.PathLike[str]) -> tuple[ov.Model, str, list[str]]:
    """The generator graph the runtime actually runs, ready to tune.

    ``caloforge.runtime`` applies exact rewrites (upsample-convolution folding) to every float
    generator before compiling, but runs an already quantized model as it is; tuning must
    therefore start from the rewritten graph. Returns ``(openvino.Model, identity, folded
    layer names)``; ``identity`` (source sha256 + rewrite tag) goes into the tuning history so a
    resume detects a changed model.
    """
    from caloforge.ovgraph import optimize_model
    from caloforge.runtime.openvino_backend import load_generator

    path = Path(model_path)
    model, folded = optimize_model(load_generator(path).model)
    identity = sha256_file(path) + "+runtime-rewrite"
    return model, identity, list(folded)
