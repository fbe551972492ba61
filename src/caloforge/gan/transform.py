"""Cell-energy transform of the phase-convolution generator: log cell energy above a threshold.

Calorimeter cells span six decades (1e-6 GeV at the shower edge to ~0.5 GeV in the core of a
500 GeV shower); a network that outputs GeV directly only sees the core. The CaloChallenge
models (CaloFlow, CaloDiffusion, CaloDREAM; arXiv 2410.21611) therefore work on the logarithm of
the cell energies. Here a cell of energy ``x`` GeV is represented by

    t = ln(x / threshold)      for x >= threshold   (t >= 0)
    t = ZERO_LEVEL (= -1)      for x <  threshold   (an exact zero)

and the inverse, applied inside the exported graph, is ``x = threshold * exp(u)`` where the
network output ``u > 0`` and an exact ``0`` elsewhere. The threshold is that of the training
data (3DGAN's EleEscan preprocessing zeroes cells below 1e-6 GeV; ``CELL_THRESHOLD_GEV``), so
the generator emits exact zeros exactly where the data have them. It is stored in the model card
and the model file's manifest as ``cell_threshold_gev``.
"""

from __future__ import annotations

import numpy as np
import torch

from caloforge.gan.data import CELL_THRESHOLD_GEV

#: Value of an empty cell in transformed units (below every occupied cell, which has t >= 0).
ZERO_LEVEL = -1.0


def to_log_numpy(images_gev: np.ndarray, threshold: float = CELL_THRESHOLD_GEV) -> np.ndarray:
    """GeV -> transformed units (float32); cells below ``threshold`` become ``ZERO_LEVEL``."""
    x = np.asarray(images_gev, dtype=np.float64)
    on = x >= threshold
    t = np.full(x.shape, ZERO_LEVEL, dtype=np.float64)
    t[on] = np.log(x[on] / threshold)
    return t.astype(np.float32)


def from_log_numpy(t: np.ndarray, threshold: float = CELL_THRESHOLD_GEV) -> np.ndarray:
    """Transformed units -> GeV (float32); ``t < 0`` are exact zeros."""
    t = np.asarray(t, dtype=np.float64)
    return np.where(t >= 0, threshold * np.exp(np.maximum(t, 0.0)), 0.0).astype(np.float32)


def to_log(images_gev: torch.Tensor, threshold: float = CELL_THRESHOLD_GEV) -> torch.Tensor:
    """Torch version of :func:`to_log_numpy` (no gradient needed: used on data)."""
    on = images_gev >= threshold
    safe = torch.where(on, images_gev, torch.ones_like(images_gev) * threshold)
    return torch.where(on, torch.log(safe / threshold), torch.full_like(images_gev, ZERO_LEVEL))


def occupancy(u: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Hard 0/1 occupancy of generator outputs ``u`` (on where ``u > 0``) whose gradient is
    that of ``sigmoid(u / temperature)`` (straight-through estimator: Bengio et al.,
    arXiv 1308.3432), so a loss on hit counts can switch cells on and off."""
    soft = torch.sigmoid(u / temperature)
    hard = (u > 0).to(u.dtype)
    return hard + soft - soft.detach()


def generated_log(u: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Generator output ``u`` -> the transformed image a discriminator sees: ``u`` where the cell
    is on, ``ZERO_LEVEL`` where it is off; the off cells pass the gradient of their occupancy, so
    the discriminator can also ask for a cell to be switched on."""
    occ = occupancy(u, temperature)
    return torch.where(u > 0, u, torch.full_like(u, ZERO_LEVEL)) + (occ - occ.detach()) \
        * (1.0 - ZERO_LEVEL)


def generated_gev(u: torch.Tensor, threshold: float = CELL_THRESHOLD_GEV) -> torch.Tensor:
    """Generator output ``u`` -> GeV with exact zeros (the graph's inverse transform)."""
    return torch.where(u > 0, threshold * torch.exp(torch.clamp(u, max=30.0)), torch.zeros_like(u))
