"""Per-epoch validation of a generator against a held-out MC file.

Two scores of showers generated at the file's energies (fixed noise seed):

* ``metric``: the 3DGAN shape metric (:class:`caloforge.physics.ShapeMetric`; means of moments
  and profiles, bins 50-500 GeV);
* ``score``: the per-energy distance of the high-level features
  (:func:`caloforge.gan.features.grouped_moment_loss` over 10 energy groups: mean + width
  differences of response, longitudinal profile, hits per layer, centroids and widths, in units
  of the reference's spread). Unlike the 3DGAN metric it sees the energy resolution, the hit
  multiplicity and the energies below 50 GeV, so it picks the best epoch of the ``phase``
  architecture.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from caloforge.errors import UserError
from caloforge.gan.data import CELL_THRESHOLD_GEV
from caloforge.gan.features import calibration_weights, grouped_moment_loss, shower_features
from caloforge.gan.phase import real_inputs

_GROUPS = 10


def _features(img: np.ndarray, e: np.ndarray, weights: torch.Tensor) -> torch.Tensor:
    _, x, occ = real_inputs(torch.from_numpy(np.asarray(img, dtype=np.float32)), CELL_THRESHOLD_GEV)
    return shower_features(x, occ, torch.from_numpy(e).float(), weights)


class Validator:
    """3DGAN metric and feature score of generated showers vs a held-out MC file."""

    def __init__(self, path: str, max_events: int, seed: int) -> None:
        from caloforge.data import open_showers
        from caloforge.physics.observables import profiles as np_profiles
        from caloforge.physics.shape_metric import ShapeMetric, ShapeSample

        self._profiles = np_profiles
        self._sample = ShapeSample
        self._weights = torch.from_numpy(calibration_weights())
        px, py, pz, es, fs = [], [], [], [], []
        with open_showers(path) as f:
            if f.grid != (25, 25, 25):
                raise UserError(f"{path}: grid {f.grid}; the generator needs (25, 25, 25)")
            for img, e in f.iter_chunks(500, 0, max_events):
                a, b, c, _, _ = np_profiles(img)
                px.append(a)
                py.append(b)
                pz.append(c)
                es.append(e)
                fs.append(_features(img, e, self._weights))
        self.energies = np.concatenate(es)
        self.reference = ShapeSample(self.energies, (np.concatenate(px), np.concatenate(py),
                                                     np.concatenate(pz)))
        self.metric = ShapeMetric(self.reference)
        self.features = torch.cat(fs)
        self.feature_scale = self.features.std(dim=0).clamp_min(1e-3)
        self.seed = seed
        self.path = path

    def generate(self, gen: torch.nn.Module, device: torch.device, chunk: int = 250
                 ) -> tuple[Any, torch.Tensor]:
        """(ShapeSample, features) of showers generated at the file's energies."""
        rng = torch.Generator(device="cpu").manual_seed(self.seed)
        latent_dim: int = getattr(gen, "latent_dim")  # noqa: B009 (an int attribute, not a tensor)
        px, py, pz, fs = [], [], [], []
        with torch.no_grad():
            for lo in range(0, len(self.energies), chunk):
                e_np = self.energies[lo:lo + chunk]
                e = torch.from_numpy(e_np).float()
                z = torch.randn(len(e), latent_dim, generator=rng)
                img = gen(z.to(device), e.to(device)).float().cpu().numpy()
                a, b, c, _, _ = self._profiles(img)
                px.append(a)
                py.append(b)
                pz.append(c)
                fs.append(_features(img, e_np, self._weights))
        sample = self._sample(self.energies, (np.concatenate(px), np.concatenate(py),
                                              np.concatenate(pz)))
        return sample, torch.cat(fs)

    def generate_sample(self, gen: torch.nn.Module, device: torch.device, chunk: int = 250) -> Any:
        return self.generate(gen, device, chunk)[0]

    def __call__(self, gen: torch.nn.Module, device: torch.device) -> dict[str, Any]:
        sample, feats = self.generate(gen, device)
        b = self.metric.breakdown(sample)
        mean, width = grouped_moment_loss(feats, self.features,
                                          torch.from_numpy(self.energies).float(),
                                          self.feature_scale, _GROUPS)
        return {"metric": b["metric"], "moment_term": b["moment_term"],
                "profile_term": b["profile_term"], "n_bins_used": b["n_bins_used"],
                "score": float(mean + width), "score_mean": float(mean),
                "score_width": float(width)}
