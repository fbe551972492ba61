"""The default objective for the 3DGAN generator: calibration inputs and the physics metric.

Isolated adapter between the generic tuner and the rest of caloforge (``gan``, ``runtime``,
``physics``, ``mc``): the tuner itself never imports those.

- Calibration: ``calibration_size`` single-event inputs, latent noise N(0,1)^200 x primary
  energies uniform over the model's trained range (``runtime.noise``, seeded).
- Evaluation: showers generated at the reference sample's energies, with fixed latent noise (the
  same for every candidate, so the comparison with FP32 is not blurred by sampling noise), scored
  with the 3DGAN shape metric (``physics.ShapeMetric``, lower is better) against the reference.
- Reference: an HDF5 shower file (``--reference``); without one a GFlash Monte Carlo sample is
  simulated at the metric's bin energies (50-500 GeV, ``reference_events`` events, seeded).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from caloforge.errors import UserError

LATENT_DIM = 200
BIN_ENERGIES_GEV = (50.0, 100.0, 200.0, 250.0, 300.0, 400.0, 500.0)


@dataclass
class GanObjective:
    """What :func:`caloforge.quant.tune` needs for the GAN: calibration inputs and ``evaluate``."""

    calibration: list[dict[str, np.ndarray]]
    evaluate: Callable[[Any], float]
    n_reference: int
    energy_range: tuple[float, float]
    description: str


def trained_energy_range(model_path: Path | None) -> tuple[float, float]:
    """The energy range (GeV) the generator was trained on: manifest, model card, else 2-500."""
    try:
        if model_path is not None:
            from caloforge.runtime.modelfile import read_manifest

            manifest = read_manifest(Path(model_path))
            if manifest and manifest.get("energy_range_gev"):
                lo, hi = manifest["energy_range_gev"]
                return float(lo), float(hi)
        from caloforge.gan.shipped import default_model_card

        lo, hi = default_model_card()["energy_range_gev"]
        return float(lo), float(hi)
    except (ImportError, KeyError, TypeError, ValueError, UserError):
        return 2.0, 500.0


def calibration_inputs(n: int, energy_range: tuple[float, float], seed: int = 0,
                       batch: int = 1) -> list[dict[str, np.ndarray]]:
    """``n`` events of calibration input (``z`` (b,200) float32, ``energy`` (b,) float32 GeV)."""
    from caloforge.runtime.noise import latent_noise, uniform_energies

    if n <= 0:
        raise UserError(f"--calibration-size {n}: must be positive")
    z = latent_noise(seed, 0, n, LATENT_DIM)
    e = uniform_energies(seed, 0, n, *energy_range).astype(np.float32)
    return [{"z": z[i:i + batch], "energy": e[i:i + batch]} for i in range(0, n, batch)]


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

    path = Path(model_path) if model_path is not None else None
    rng_e = energy_range or trained_energy_range(path)
    calibration = calibration_inputs(calibration_size, rng_e, seed)
    ref_images, ref_energies = load_reference(reference, reference_events, seed)
    metric = ShapeMetric((ref_images, ref_energies))
    energies = np.asarray(ref_energies, dtype=np.float32)
    z = latent_noise(seed + 1, 0, energies.size, LATENT_DIM)

    def evaluate(compiled: Any) -> float:
        images = np.empty((energies.size, *ref_images.shape[1:]), dtype=np.float32)
        for start in range(0, energies.size, batch):
            stop = min(start + batch, energies.size)
            out = compiled({"z": z[start:stop], "energy": energies[start:stop]})
            images[start:stop] = np.asarray(out[0]).reshape(stop - start, *ref_images.shape[1:])
        return metric((images, energies.astype(np.float64)))

    source = str(reference) if reference is not None else f"GFlash MC ({energies.size} events)"
    return GanObjective(calibration, evaluate, int(energies.size), rng_e,
                        f"3DGAN shape metric vs {source}")


def runtime_graph(model_path: str | os.PathLike[str]) -> tuple[Any, str, list[str]]:
    """The generator graph the runtime actually runs, ready to tune.

    ``caloforge.runtime`` applies exact rewrites (upsample-convolution folding) to every float
    generator before compiling, but runs an already quantized model as it is; tuning must
    therefore start from the rewritten graph. Returns ``(openvino.Model, identity, folded
    layer names)``; ``identity`` (source sha256 + rewrite tag) goes into the tuning history so a
    resume detects a changed model.
    """
    import hashlib

    from caloforge.runtime import get_backend
    from caloforge.runtime.openvino_backend import optimize_model

    path = Path(model_path)
    model, folded = optimize_model(get_backend("openvino").load(path).model)
    identity = hashlib.sha256(path.read_bytes()).hexdigest() + "+runtime-rewrite"
    return model, identity, list(folded)
