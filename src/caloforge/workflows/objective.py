"""The objective for tuning a generator (3DGAN or ``phase``): calibration inputs and the physics metric.

The adapter between the generic tuner (:mod:`caloforge.quant`, which never imports ``gan``,
``runtime``, ``physics`` or ``mc``) and the rest of caloforge.

- Calibration: ``calibration_size`` single-event inputs, latent noise N(0,1)^L (L the model's
  latent size, read from its graph: 200 for the 3DGAN, 3151/3153 for ``phase``) x primary
  energies uniform over the model's trained range (:func:`caloforge.runtime.calibration_inputs`,
  the runtime's full-INT8 calibration set too).
- Evaluation: showers generated at the reference sample's energies, with fixed latent noise (the
  same for every candidate, so the comparison with FP32 is not blurred by sampling noise), scored
  with the 3DGAN shape metric (``physics.ShapeMetric``, lower is better) against the reference;
  with a multi-metric criterion (the default, :data:`caloforge.workflows.criterion.DEFAULT_CRITERION`)
  also the per-energy response, width and hits and the paired FPD against FP32 showers
  (:mod:`caloforge.workflows.objective_physics`); ``evaluate`` then returns ``{name: value}``.
- Reference: an HDF5 shower file (``reference``); without one a GFlash Monte Carlo sample is
  simulated at the metric's bin energies (:data:`BIN_ENERGIES_GEV`, ``reference_events``
  events, seeded).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from caloforge.data.manifest import sha256_file
from caloforge.errors import UserError
from caloforge.facts import IMAGE_SHAPE
from caloforge.physics.shape_metric import DEFAULT_BINS
from caloforge.quant import Criterion, Metric
from caloforge.runtime.quantize import calibration_inputs
from caloforge.workflows.criterion import (
    DEFAULT_CRITERION,
    FPD,
    PER_ENERGY,
    THREEDGAN,
    MetricSpec,
    needs,
    resolve,
)
from caloforge.workflows.objective_physics import (
    SCAN_ENERGIES_GEV,
    SCAN_EVENTS,
    physics_panel,
    showers,
)

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
    evaluate: Callable[[ov.CompiledModel], float | Mapping[str, float]]
    n_reference: int
    energy_range: tuple[float, float]
    description: str
    criterion: Criterion | list[Metric] = field(default_factory=Criterion)
    """What ``evaluate`` is judged by: one :class:`~caloforge.quant.Criterion` (``evaluate``
    returns the 3DGAN metric) or the metrics of a multi-metric criterion (a dict)."""
    fpd_floor: float | None = None  # the FP32-vs-FP32 FPD floor (when fpd is a metric)


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
                  batch: int = 50, energy_range: tuple[float, float] | None = None, *,
                  criterion: Criterion | Sequence[MetricSpec] | None = None,
                  graph: ov.Model | str | os.PathLike[str] | None = None,
                  scan_energies: Sequence[float] = SCAN_ENERGIES_GEV,
                  scan_events: int = SCAN_EVENTS) -> GanObjective:
    """Calibration set and evaluation function for a generator (ONNX inputs ``z`` (B, L) and
    ``energy``; any latent size L, read from the graph).

    ``reference_events`` caps the reference sample used (from the file) or sets its size (when
    simulated: 2000 events take a while; the CLI default simulates fewer).
    ``criterion``: a :class:`~caloforge.quant.Criterion` (the 3DGAN metric alone, ``evaluate``
    returns a float) or metric specs (default :data:`~caloforge.workflows.criterion.DEFAULT_CRITERION`;
    ``evaluate`` returns every metric). The per-energy metrics and FPD use ``scan_events``
    showers at each of ``scan_energies`` (GeV) and FP32 showers of ``graph`` (default: the
    runtime's graph of ``model_path``, compiled in f32).
    """
    if calibration_size <= 0:
        raise UserError(f"calibration_size {calibration_size}: must be positive")
    if scan_events < 20:
        raise UserError(f"scan_events {scan_events}: need at least 20 events per energy")

    path = Path(model_path) if model_path is not None else None
    rng_e = energy_range or trained_energy_range(path)
    latent = _latent_dim(path, graph)
    calibration = calibration_inputs(calibration_size, rng_e, seed, latent_dim=latent)
    specs = None if isinstance(criterion, Criterion) else list(criterion or DEFAULT_CRITERION)
    shape: Callable[[ov.CompiledModel], float] | None = None
    n_ref, source = 0, ""
    if specs is None or needs(specs, THREEDGAN):
        shape, n_ref, source = _shape_metric(reference, reference_events, seed, batch, latent)
    if specs is None:
        assert shape is not None and isinstance(criterion, Criterion)
        return GanObjective(calibration, shape, n_ref, rng_e, f"3DGAN shape metric vs {source}",
                            criterion)
    panel = None
    if any(needs(specs, f) for f in (*PER_ENERGY, FPD)):
        from caloforge.detector import clic_ecal
        from caloforge.ovgraph import compile_model

        fp32 = compile_model(graph if graph is not None else runtime_graph(_onnx(path))[0],
                             hint="f32")
        panel = physics_panel(fp32, clic_ecal().layer_sampling_fraction, tuple(scan_energies),
                              scan_events, seed, batch, latent)
    metrics = resolve(specs, panel.centres if panel else [], panel.fpd_floor if panel else None)

    def evaluate(compiled: ov.CompiledModel) -> dict[str, float]:
        values = {THREEDGAN: shape(compiled)} if shape is not None else {}
        if panel is not None:
            values.update(panel.measure(compiled))
        return values

    what = [f"3DGAN shape metric vs {source}"] if shape is not None else []
    if panel is not None:
        what.append(f"per-energy response/width/hits and paired FPD at "
                    f"{', '.join(f'{e:g}' for e in panel.centres)} GeV ({scan_events} showers "
                    f"each; FPD floor {panel.fpd_floor:.4g})")
    return GanObjective(calibration, evaluate, n_ref, rng_e, "; ".join(what), metrics,
                        None if panel is None else panel.fpd_floor)


def _onnx(path: Path | None) -> Path:
    if path is not None:
        return path
    from caloforge.gan.shipped import default_onnx_path

    return Path(default_onnx_path())


def _latent_dim(path: Path | None, graph: ov.Model | str | os.PathLike[str] | None) -> int:
    """The latent size of the generator to tune: from ``graph`` (an ``openvino.Model`` or a
    file) when given, else from the model file (``None``: the shipped model)."""
    from caloforge.runtime.modelfile import check_interface
    from caloforge.runtime.openvino_backend import load_generator

    if graph is not None and not isinstance(graph, str | os.PathLike):
        return check_interface(graph, "the graph to tune")
    return load_generator(Path(graph) if graph is not None else _onnx(path)).latent_dim


def _shape_metric(reference: str | os.PathLike[str] | None, reference_events: int, seed: int,
                  batch: int, latent_dim: int
                  ) -> tuple[Callable[[ov.CompiledModel], float], int, str]:
    """The 3DGAN metric of a compiled generator against the reference, on fixed noise."""
    from caloforge.physics import ShapeMetric
    from caloforge.runtime.noise import latent_noise

    ref_images, ref_energies = load_reference(reference, reference_events, seed)
    if tuple(ref_images.shape[1:]) != IMAGE_SHAPE:
        raise UserError(f"{reference}: reference showers have the grid {ref_images.shape[1:]}, "
                        f"the generator makes {IMAGE_SHAPE}")
    metric = ShapeMetric((ref_images, ref_energies))
    energies = np.asarray(ref_energies, dtype=np.float32)
    z = latent_noise(seed + 1, 0, energies.size, latent_dim)

    def evaluate(compiled: ov.CompiledModel) -> float:
        images = showers(compiled, z, energies, batch)
        return metric((images, energies.astype(np.float64)))

    source = str(reference) if reference is not None else f"GFlash MC ({energies.size} events)"
    return evaluate, int(energies.size), source


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
