"""A training loss on how a shower's hits and size move together (``--joint-weight``).

The per-energy-group feature loss (:func:`caloforge.gan.features.grouped_moment_loss`) matches
each feature's mean and width. It cannot see how the features fluctuate *together*, and that
is what the classifier test reads in the calibrated phase default. In the MC a later shower
has fewer hits above 0.3 MeV and a wider one more, at fixed energy; docs/gan.md, "What the
layer energies do not explain", and ``caloforge.physics.correlations``.

Per event, :func:`joint_statistics` gives three numbers: ``ln(1 + fired cells)``, ``ln(1 +
cells above 0.3 MeV)`` and the log of the size ``sum x r^2 / sum x`` (r from the grid's
central column, cells: not about the shower's centroid, so the centroid's offset counts too;
it is ``m2_x + m2_y`` plus the squared offset). :func:`joint_moment_loss` removes their trend in ln E: a quadratic
fitted by least squares on the *real* batch, and the same coefficients applied to the fakes,
which share the reals' energies. Then it compares the covariance matrices of the residuals
and the fakes' mean residual, in units of the reals' residual spread. Both are minimised by a
generator with the data's joint distribution (their batch estimates, absolute values of noisy
differences, stay at ~sqrt(2 / B) there): second-moment matching in the spirit of
moment-matching networks (Li, Swersky & Zemel, ICML 2015), on three physics numbers.

Hits carry gradients through straight-through estimators: the occupancy tensor for the fired
cells, and ``sigmoid(ln(x / 0.3 MeV) / T)`` for the hard ones.
"""

from __future__ import annotations

import math

import torch

#: Cell energy above which a hit counts as hard (the classifier's ``n_hits``), GeV.
HARD_THRESHOLD_GEV = 3e-4
#: Temperature (in ln E) of the hard-hit straight-through estimator.
HARD_TEMPERATURE = 0.25


def joint_statistics(x: torch.Tensor, occ: torch.Tensor,
                     hard_threshold: float = HARD_THRESHOLD_GEV) -> torch.Tensor:
    """(B, 3): ``ln(1 + fired)``, ``ln(1 + hard)``, ``ln(size + 1e-3)`` of showers ``x`` GeV
    (B, X, Y, Z) with occupancy ``occ`` (0/1 for data, straight-through for a generator)."""
    _, nx, ny, _ = x.shape
    fired = occ.sum(dim=(1, 2, 3))
    logx = torch.log(x.clamp_min(1e-30))
    soft = torch.sigmoid((logx - math.log(hard_threshold)) / HARD_TEMPERATURE)
    hard_cells = (x > hard_threshold).to(x.dtype)
    hard = (hard_cells + soft - soft.detach()) * (x > 0).to(x.dtype)
    ix = torch.arange(nx, dtype=x.dtype, device=x.device) - (nx - 1) / 2
    iy = torch.arange(ny, dtype=x.dtype, device=x.device) - (ny - 1) / 2
    r2 = (ix[:, None] ** 2 + iy[None, :] ** 2)[None, :, :, None]
    total = x.sum(dim=(1, 2, 3)) + 1e-9
    size = (x * r2).sum(dim=(1, 2, 3)) / total
    return torch.stack([torch.log1p(fired), torch.log1p(hard.sum(dim=(1, 2, 3))),
                        torch.log(size + 1e-3)], dim=1)


def energy_trend(real: torch.Tensor, energy: torch.Tensor) -> torch.Tensor:
    """(B, F): the least-squares quadratic trend in ln E of ``real`` (B, F), no gradient. In
    float64 on a standardised ln E, through the normal equations with a tiny ridge, so that a
    batch at one or two energies (a rank-deficient design) gets its minimum-norm-like trend on
    any device (``torch.linalg.lstsq`` on CUDA assumes full rank)."""
    le = torch.log(energy.detach().to(torch.float64))
    t = (le - le.mean()) / le.std(unbiased=False).clamp_min(1e-6)
    design = torch.stack([torch.ones_like(t), t, t * t], dim=1)
    gram = design.T @ design + 1e-9 * len(t) * torch.eye(3, dtype=t.dtype, device=t.device)
    coef = torch.linalg.solve(gram, design.T @ real.detach().to(torch.float64))
    return (design @ coef).to(real.dtype)


def joint_moment_loss(fake: torch.Tensor, real: torch.Tensor, energy: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """(covariance term, mean term) of statistics ``fake`` and ``real`` (B, F) of showers at the
    same energies ``energy`` (B,) (module doc): the mean over matrix entries of ``|C_fake -
    C_real| / (s s^T)`` and over statistics of ``|mean residual of the fakes| / s``, ``s`` the
    reals' residual sd."""
    trend = energy_trend(real, energy)
    rf, rr = fake - trend, real - trend
    n = len(real)
    # the reals' residuals have mean zero by construction; 3 trend coefficients were fitted
    c_real = rr.T @ rr / max(n - 3, 1)
    cf = rf - rf.mean(dim=0)
    c_fake = cf.T @ cf / max(n - 1, 1)
    s = torch.sqrt(torch.diagonal(c_real)).detach().clamp_min(1e-3)
    cov = ((c_fake - c_real).abs() / (s[:, None] * s[None, :])).mean()
    mean = (rf.mean(dim=0).abs() / s).mean()
    return cov, mean


__all__ = [
    "HARD_TEMPERATURE",
    "HARD_THRESHOLD_GEV",
    "energy_trend",
    "joint_moment_loss",
    "joint_statistics",
]
