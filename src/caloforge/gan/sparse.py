"""Sparse output head of the phase generator: *whether* a cell fires and *how much* it gets, apart.

Why: with one log-energy channel, a cell is on where its value crosses the threshold, so the
on-cells' spectrum starts at its densest just above the threshold (a smooth function crossing a
level). The MC's halo is the opposite: discrete energy spots of ~1e-4..1e-3 GeV and almost no
cells between 1e-6 and 1e-5 GeV (measured at 100 GeV: 16 of 396 halo cells; the one-channel
model had 118 of 344 there, and 16% too few hits above 10 keV). Generators of sparse calorimeter
images therefore emit an occupancy and an energy per cell (e.g. the hit/energy split of
CaloDiffusion's and CaloScore's sparsity handling, arXiv 2308.03876 / 2206.11898). Here:

* channel 0 of the last transposed convolution is an occupancy logit ``a``, channel 1 a log
  energy ``v``; each gets full-resolution noise (the cell noise of the 7^3 and 14^3 grids,
  re-used through fixed random index maps: a Gather, no new latent numbers) with a learned
  strength per cell;
* a cell fires where ``a + s_a n_a > 0`` (straight-through gradient, as in
  :func:`caloforge.gan.transform.occupancy`) and then holds ``threshold x exp(softplus(v +
  e_v))``, never less than the threshold; ``e_v`` is the energy noise :func:`skewed_noise`
  (``s_v n_v`` skewed per cell by the calibration's ``k``; Gaussian for ``k = 0``);
* the per-layer rescaling to the layer energies multiplies the fired cells' energies and keeps
  the occupancy, so it converges in a few passes without moving cells across the threshold.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from caloforge.gan.layer_rules import width_contrast
from caloforge.gan.layers import layer_shift
from caloforge.gan.transform import ZERO_LEVEL

_CAP = 16.0  # = phase.U_MAX (threshold x e^16 = 8.9 GeV per cell)


def noise_maps(n_cells: int, n_source: int, seed: int = 20261201) -> torch.Tensor:
    """(2, n_cells) fixed random indices into the ``n_source`` cell-noise numbers of the latent
    vector (every source number used about n_cells / n_source times per map, in random places)."""
    g = torch.Generator().manual_seed(seed)
    reps = -(-n_cells // n_source)
    maps = [torch.cat([torch.randperm(n_source, generator=g) for _ in range(reps)])[:n_cells]
            for _ in range(2)]
    return torch.stack(maps)


def skew_of(k: torch.Tensor | float) -> torch.Tensor:
    """Skewness of ``(n + k (n^2 - 1)) / sqrt(1 + 2 k^2)``, ``n`` standard normal:
    ``(6 k + 8 k^3) / (1 + 2 k^2)^(3/2)`` (from E[n^4] = 3, E[n^6] = 15; it tends to the
    chi-square(1) value 2^(3/2) for large k)."""
    k = torch.as_tensor(k, dtype=torch.float64)
    return (6 * k + 8 * k ** 3) / (1 + 2 * k ** 2) ** 1.5


def skewed_noise(n: torch.Tensor, strength: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``strength x (n + k (n^2 - 1)) / sqrt(1 + 2 k^2)``: standard normal ``n`` made skewed
    per cell, mean 0 and spread ``|strength|`` kept (:func:`skew_of`); ``k = 0`` gives
    ``strength x n`` exactly. Why: in the MC a cell's ln E when hit is skewed to low values
    (skewness -1 to -1.7 outside the shower core, 150-300 GeV: cells share a few energy spots
    with a light upper tail), while a Gaussian in ln E with the same mean and spread has a
    1.3-1.5x larger relative spread of E itself, which made the per-layer transverse widths
    and centroids fluctuate 1.5-2x too much. Written as ``n (a + b n) - b`` (per-cell constants
    ``a``, ``b``: two multiplications and two additions in the exported graph)."""
    norm = torch.rsqrt(1.0 + 2.0 * k * k)
    a, b = strength * norm, strength * k * norm
    return n * (a + b * n) - b


def sparse_cells(logit: torch.Tensor, value: torch.Tensor, target_gev: torch.Tensor | None,
                 threshold: float, iterations: int = 3, width2: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(t, x, occ) of a sparse head's (noisy) ``logit`` and ``value`` (B, X, Y, Z): ``x`` GeV
    (exact zeros where the cell does not fire), ``t`` the transformed image (``ln(x /
    threshold)``, ``ZERO_LEVEL`` off), ``occ`` the straight-through occupancy; rescaled layer
    by layer to ``target_gev`` (B, Z) when given, after each layer's energies were given the
    radial width^2 ``width2`` (B, Z) when that is given
    (:func:`caloforge.gan.layer_rules.width_contrast`). Differentiable in both inputs."""
    soft = torch.sigmoid(logit)
    hard = (logit > 0).to(logit.dtype)
    occ = hard + soft - soft.detach()
    cells = threshold * torch.exp(torch.clamp(F.softplus(value), max=_CAP))
    if width2 is not None and target_gev is not None:
        cells = torch.where(hard > 0, width_contrast(hard * cells, width2, target_gev, threshold),
                            cells)
    if target_gev is not None:
        def scaled(shift: torch.Tensor) -> torch.Tensor:
            return torch.clamp(cells * torch.exp(shift)[:, None, None, :], min=threshold)

        shift = layer_shift(lambda s: (hard * scaled(s)).sum(dim=(1, 2)), target_gev, threshold,
                            iterations)
        cells = scaled(shift)
    # the energies carry no occupancy gradient (as for the one-channel head): an energy-weighted
    # feature of a layer with no fired cell (centroid = sum x i / (sum x + 1e-9)) would otherwise
    # send gradients of ~1e15 into the logits; hits, spectrum and the discriminator switch cells
    x = hard * cells
    t = torch.where(hard > 0, torch.log(cells / threshold), torch.full_like(cells, ZERO_LEVEL)) \
        + (occ - occ.detach()) * (1.0 - ZERO_LEVEL)
    return t, x, occ


def sparse_gev(logit: torch.Tensor, value: torch.Tensor, target_gev: torch.Tensor | None,
               threshold: float, iterations: int = 3, width2: torch.Tensor | None = None
               ) -> torch.Tensor:
    """The cell energies in GeV (B, X, Y, Z) of :func:`sparse_cells` alone, the same numbers to
    float rounding: the inference path (``PhaseGenerator.forward``, the exported graph), no
    gradients. Written for few full-size passes (``docs/runtime.md``):

    * ``threshold x exp(min(softplus(v), 16)) = threshold x min(1 + e^v, e^16)`` (one Exp, no
      Softplus; ``e^softplus(v) = 1 + e^v``);
    * the unscaled energies ``x0`` (0 where the cell does not fire, ``>= threshold`` where it
      does) carry the occupancy, so a pass reads one tensor: the rescaled fired cell is
      ``max(x0 k, threshold) = max(x0 k, min(x0, threshold))``, which is 0 where ``x0`` is;
    * the first pass of :func:`caloforge.gan.layers.layer_shift` (shift 0) is the plain layer
      sum of ``x0`` (no cell is below the threshold yet); only ``(B, Z)`` tensors in between;
    * each pass reads ``x0`` alone and nothing of it outlives the pass: with ``y = x0 k``,
      ``max(y, min(x0, threshold)) = min(max(y, threshold), y F)`` for any ``F >= 1 / k_min``
      (``y F`` is 0 where ``x0`` is and above ``max(y, threshold)`` where it fires; ``k >=
      k_min = e^(-8 x iterations)``, the steps being clamped to +-8). The form with
      ``min(x0, threshold)`` made the graph compiler keep that term as one more full-size
      tensor shared by the passes (INT8 profile: 0.26 ms per batch of 32 to write it, and one
      more read per pass).

    ``width2`` (B, Z): each layer's fired energies first get that radial width^2
    (:func:`caloforge.gan.layer_rules.width_contrast`, which also scales them to the layer
    energies; the passes then only repair the cells it left below the threshold)."""
    fired = logit > 0
    cells = threshold * torch.clamp(torch.exp(value) + 1.0, max=math.exp(_CAP))
    x0 = torch.where(fired, cells, 0.0)  # a scalar: no full-size zero tensor in the graph
    if target_gev is None:
        return x0
    if width2 is not None:  # ln x0 = ln threshold + min(softplus(v), 16) where it fires
        log_x0 = math.log(threshold) + torch.clamp(F.softplus(value), max=_CAP)
        x0 = width_contrast(x0, width2, target_gev, threshold,
                            log_x0=(log_x0, math.log(threshold) + _CAP))
    big = 2.0 * math.exp(8.0 * iterations)  # > 1 / k_min; y F stays finite (y <= thr e^(16+8i))

    def scaled(shift: torch.Tensor) -> torch.Tensor:
        y = x0 * torch.exp(shift)[:, None, None, :]
        return torch.minimum(torch.clamp(y, min=threshold), y * big)

    shift = layer_shift(lambda s: scaled(s).sum(dim=(1, 2)), target_gev, threshold, iterations,
                        sum_at_zero=x0.sum(dim=(1, 2)))  # (x0 >= threshold where fired)
    return scaled(shift)


def log_cells(t: torch.Tensor, logit: torch.Tensor) -> torch.Tensor:
    """One tensor that is > 0 exactly where a cell fires: its log energy there, its (negative)
    occupancy logit elsewhere (what :func:`caloforge.gan.features.summary_features` and the
    ``forward_log`` interface expect)."""
    return torch.where(logit > 0, t + 1e-4, logit)


__all__ = ["log_cells", "noise_maps", "skew_of", "skewed_noise", "sparse_cells", "sparse_gev"]
