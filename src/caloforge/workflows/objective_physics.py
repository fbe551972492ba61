"""The per-energy and paired metrics of the generator's tuning criterion (the *physics panel*).

Showers are generated at a few primary energies (:data:`SCAN_ENERGIES_GEV`, ``events`` each)
with one fixed latent noise, the same for FP32 and every candidate. From each sample, with the
physics layer's own observables (:func:`caloforge.physics.event_features`, the energy scan's
:func:`~caloforge.physics.energy_scan.calibrated_energy` / ``bin_summary``):

- ``response@EGeV``: mean of ``E_cal / E`` (``E_cal = sum_l E_l / f_l``, the detector's per-layer
  sampling fractions); ``width@EGeV``: its std / mean; ``hits@EGeV``: mean number of cells above
  the energy scan's 10 keV threshold;
- ``fpd``: the Frechet distance (:func:`caloforge.physics.frechet_distance`) between the
  candidate's and the FP32 model's high-level features (quantile-standardised on the FP32
  sample, :func:`caloforge.physics.standardise`), both on the same noise and energies. Its
  *floor* is the same distance between FP32 on this noise and FP32 on independent noise: how
  far apart two samples of this size are when nothing changed but the noise. A candidate within
  the floor differs from FP32 by less than resampling does (docs/quantization.md: why FPD and not
  a classifier AUC).

Because the noise is shared, a candidate identical to FP32 gives exactly the FP32 values (and
FPD 0): the tolerances measure quantization, not sampling noise, so a few hundred events per
energy do (:data:`SCAN_EVENTS`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from caloforge.facts import IMAGE_SHAPE, LATENT_DIM
from caloforge.physics import event_features, frechet_distance, standardise
from caloforge.physics.energy_scan import bin_summary, calibrated_energy, energy_bins
from caloforge.workflows.criterion import FPD, PER_ENERGY, energy_name

if TYPE_CHECKING:  # pragma: no cover
    import openvino as ov

SCAN_ENERGIES_GEV: tuple[float, ...] = (6.0, 25.0, 90.0, 180.0, 420.0)
"""Primary energies (GeV) of the per-energy metrics: down to 6 GeV, below the 3DGAN metric's
50-500 GeV bins, and the metric's range."""

SCAN_EVENTS = 400
"""Showers per energy. The paired difference of a width at 6 GeV (where the shipped generator's
calibrated width is only 0.7%) scatters by +-5% between noise seeds at 100 showers for a
harmless INT8 configuration and by +-0.5% at 400 (docs/quantization.md), so a 5% tolerance needs
~400."""

Generator = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``generate(z (N, latent size), energies (N,)) -> images (N, X, Y, Z)``."""


def showers(compiled: ov.CompiledModel, z: np.ndarray, energies: np.ndarray,
            batch: int = 50) -> np.ndarray:
    """Run a compiled generator (inputs ``z``, ``energy``) in batches: ``(N, 25, 25, 25)`` GeV."""
    images = np.empty((energies.size, *IMAGE_SHAPE), dtype=np.float32)
    e = np.asarray(energies, dtype=np.float32)
    for start in range(0, e.size, batch):
        stop = min(start + batch, e.size)
        out = compiled({"z": z[start:stop], "energy": e[start:stop]})
        images[start:stop] = np.asarray(out[0]).reshape(stop - start, *IMAGE_SHAPE)
    return images


@dataclass
class PhysicsPanel:
    """The per-energy metrics and the paired FPD of a candidate against fixed FP32 showers."""

    z: np.ndarray
    energies: np.ndarray  # per event, GeV
    centres: list[float]  # the energy bins (GeV)
    sampling_fractions: np.ndarray
    fp32_features: np.ndarray  # raw high-level features of the FP32 showers (shared noise)
    fpd_floor: float
    batch: int = 50

    def features(self, images: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
        """(per-energy metrics, high-level feature matrix) of showers at ``self.energies``."""
        table = event_features(images, self.energies.astype(np.float64))
        e_cal = calibrated_energy(table, self.sampling_fractions)
        _, edges = energy_bins(self.energies)
        rows = bin_summary(table, e_cal, edges)
        values: dict[str, float] = {}
        keys = {"response": "response", "width": "resolution", "hits": "hits"}
        for family in PER_ENERGY:
            for centre, row in zip(self.centres, rows, strict=True):
                values[energy_name(family, centre)] = float(row.get(keys[family], np.nan))
        return values, table.high_level()[0]

    def fpd(self, features: np.ndarray) -> float:
        """Frechet distance to the FP32 features, quantile-standardised on the FP32 sample."""
        (ref, cand), _ = standardise(self.fp32_features, features)
        return frechet_distance(ref, cand)

    def measure(self, compiled: ov.CompiledModel) -> dict[str, float]:
        """Every per-energy metric and ``fpd`` of a compiled candidate."""
        values, feats = self.features(showers(compiled, self.z, self.energies, self.batch))
        values[FPD] = self.fpd(feats)
        return values


def physics_panel(fp32: ov.CompiledModel, sampling_fractions: np.ndarray,
                  energies: tuple[float, ...] = SCAN_ENERGIES_GEV, events: int = SCAN_EVENTS,
                  seed: int = 0, batch: int = 50, latent_dim: int = LATENT_DIM) -> PhysicsPanel:
    """The panel for one generator (latent size ``latent_dim``): FP32 showers on the shared
    noise (``seed``) and on independent noise (the FPD floor), ``events`` per energy."""
    from caloforge.runtime.noise import latent_noise

    e = np.repeat(np.asarray(energies, dtype=np.float64), events)
    z = latent_noise(seed + 2, 0, e.size, latent_dim)
    z_floor = latent_noise(seed + 3, 0, e.size, latent_dim)
    centres = [float(c) for c in energy_bins(e)[0]]
    panel = PhysicsPanel(z, e, centres, np.asarray(sampling_fractions, dtype=np.float64),
                         np.empty((0, 0)), float("nan"), batch)
    panel.fp32_features = panel.features(showers(fp32, z, e, batch))[1]
    floor_features = panel.features(showers(fp32, z_floor, e, batch))[1]
    panel.fpd_floor = panel.fpd(floor_features)
    return panel


__all__ = ["SCAN_ENERGIES_GEV", "SCAN_EVENTS", "PhysicsPanel", "physics_panel", "showers"]
