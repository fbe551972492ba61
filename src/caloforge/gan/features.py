"""Differentiable high-level shower features: what a calorimeter physicist reads off a shower.

Per event (images (B, X, Y, Z) in GeV, layer axis last), the features are those of the
CaloChallenge high-level classifier and of ``docs/validation.md`` (arXiv 2410.21611, sec. 4):

* the layer-calibrated energy response ``ln(sum_l w_l E_l / E_primary)``, ``w_l = f_0 / f_l``
  the inverse sampling fraction of layer ``l`` relative to the first (CLIC: 1 in front, 1.97 in
  the 8 back layers) -- mean and width per energy are what calorimetry calibrates;
* the longitudinal profile: ``ln(E_l / E + 1e-5)`` per layer;
* the hit multiplicity: ``ln(1 + n_l)`` per layer and ``ln(1 + n)`` in all;
* per layer the energy-weighted centroids in x and y and the radial width (cells);
* the depth centroid and depth spread (layers).

Hits are counted from an occupancy tensor (0/1 for data; a straight-through estimator for the
generator, :func:`caloforge.gan.transform.occupancy`), so the counts carry a gradient.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from caloforge.detector import clic_ecal

_EPS = 1e-9


def calibration_weights() -> np.ndarray:
    """``w_l = f_0 / f_l`` of the CLIC ECAL (the 3DGAN detector), shape (25,)."""
    f = np.asarray(clic_ecal().layer_sampling_fraction, dtype=np.float64)
    return (f[0] / f).astype(np.float32)


def n_features(n_layers: int = 25) -> int:
    """Length of the feature vector of :func:`shower_features`."""
    return 1 + 5 * n_layers + 3


def shower_features(x: torch.Tensor, occ: torch.Tensor, energy: torch.Tensor,
                    weights: torch.Tensor) -> torch.Tensor:
    """(B, n_features) high-level features; ``x`` GeV (B, X, Y, Z), ``occ`` occupancy of the same
    shape, ``energy`` primary GeV (B,), ``weights`` calibration weights (Z,)."""
    _, nx, ny, nz = x.shape
    layer_e = x.sum(dim=(1, 2))                                    # (B, Z)
    total = layer_e.sum(dim=1) + _EPS
    calibrated = (layer_e * weights).sum(dim=1) + _EPS
    response = torch.log(calibrated / energy).unsqueeze(1)
    frac = torch.log(layer_e / total.unsqueeze(1) + 1e-5)
    hits_l = occ.sum(dim=(1, 2))
    log_hits = torch.log1p(hits_l)
    ix = torch.arange(nx, dtype=x.dtype, device=x.device) - (nx - 1) / 2
    iy = torch.arange(ny, dtype=x.dtype, device=x.device) - (ny - 1) / 2
    le = layer_e + _EPS
    cx = (x.sum(dim=2) * ix[None, :, None]).sum(dim=1) / le        # (B, Z)
    cy = (x.sum(dim=1) * iy[None, :, None]).sum(dim=1) / le
    r2 = ix[:, None] ** 2 + iy[None, :] ** 2                       # (X, Y)
    width = torch.sqrt((x * r2[None, :, :, None]).sum(dim=(1, 2)) / le + 1e-6)
    iz = torch.arange(nz, dtype=x.dtype, device=x.device)
    w = layer_e / total.unsqueeze(1)
    zbar = (w * iz).sum(dim=1)
    zspread = torch.sqrt((w * (iz - zbar.unsqueeze(1)) ** 2).sum(dim=1) + 1e-6)
    n_tot = torch.log1p(hits_l.sum(dim=1))
    return torch.cat([response, frac, log_hits, cx, cy, width,
                      n_tot.unsqueeze(1), zbar.unsqueeze(1), zspread.unsqueeze(1)], dim=1)


#: Ring edges (cells from the shower axis) of :func:`ring_features`.
RING_EDGES = (0.0, 0.5, 1.5, 2.5, 3.5, 5.5, 8.5, 12.5, 1e9)


def ring_features(x: torch.Tensor, occ: torch.Tensor) -> torch.Tensor:
    """(B, 16) transverse shape in rings around the shower axis (cells, summed over layers):
    ``ln(E_ring / E + 1e-6)`` and ``ln(1 + hits_ring)`` for the rings of :data:`RING_EDGES`.
    The transverse profile's tails (a few 1e-4 of the energy per cell column, out to 12 cells)
    are what the 3DGAN metric's profile term and the CaloChallenge transverse widths weigh;
    per-layer second moments alone let a generator trade a missing halo for a wider core."""
    _, nx, ny, _ = x.shape
    ix = torch.arange(nx, dtype=x.dtype, device=x.device) - (nx - 1) / 2
    iy = torch.arange(ny, dtype=x.dtype, device=x.device) - (ny - 1) / 2
    r = torch.sqrt(ix[:, None] ** 2 + iy[None, :] ** 2)
    e_xy = x.sum(dim=3).flatten(1)                                   # (B, X*Y)
    h_xy = occ.sum(dim=3).flatten(1)
    total = e_xy.sum(dim=1, keepdim=True) + _EPS
    masks = torch.stack([((r >= lo) & (r < hi)).flatten()
                         for lo, hi in itertools.pairwise(RING_EDGES)]).to(x.dtype)  # (R, X*Y)
    e_ring = e_xy @ masks.T
    h_ring = h_xy @ masks.T
    return torch.cat([torch.log(e_ring / total + 1e-6), torch.log1p(h_ring)], dim=1)


#: Smallest loss unit of each ring / summary feature (:func:`ring_features` then
#: :func:`summary_features`): 0.25 for the ring energies and hits (ln units; an empty outer ring
#: has no spread in the data, and a 1e-2 floor made its gradient explode); for the shower's x/y
#: centroid 0.01 cells and for its second moment 0.05 cells^2 -- the MC's centroid scatters by
#: only ~0.015 cells at 100 GeV, so a coarser unit let a bias of 0.03 cells (which a classifier
#: sees at once) cost nothing; 0.05 for the two ln hit counts.
RING_SUMMARY_FLOORS = (0.25,) * 16 + (0.01, 0.05, 0.01, 0.05, 0.05, 0.05)


def summary_features(x: torch.Tensor, log_cells: torch.Tensor) -> torch.Tensor:
    """(B, 6) per-shower summaries of the validation classifier's feature set
    (``caloforge.physics.observables.event_features``): first and second moments of the x and y
    profiles (cells), and ``ln(1 + n)`` of the hits above 3e-4 GeV and above 1e-5 GeV.

    ``log_cells`` is the transformed image (``ln(x / 1e-6 GeV)``: data) or the generator's
    pre-threshold output ``u``; the hit counts use the straight-through occupancy at the
    level ``ln(threshold / 1e-6 GeV)``, so they carry a gradient for generated showers."""
    from caloforge.gan.transform import occupancy

    total = x.sum(dim=(1, 2, 3)) + _EPS
    out = []
    for axis in ((2, 3), (1, 3)):
        prof = x.sum(dim=axis)                                        # (B, N)
        i = torch.arange(prof.shape[1], dtype=x.dtype, device=x.device)
        m1 = (prof * i).sum(dim=1) / total
        out += [m1, (prof * (i - m1.unsqueeze(1)) ** 2).sum(dim=1) / total]
    for level_gev in (3e-4, 1e-5):
        level = math.log(level_gev / 1e-6)
        out.append(torch.log1p(occupancy(log_cells - level).sum(dim=(1, 2, 3))))
    return torch.stack(out, dim=1)


#: Centres of the log cell-energy bins of :func:`spectrum_features` (transformed units:
#: ``ln(x / 1e-6 GeV)``; 0.5 .. 12.5 covers 1.6e-6 .. 0.27 GeV) and the radius (cells) that
#: separates the shower core from its halo there.
SPECTRUM_CENTRES = tuple(0.5 + k for k in range(13))
SPECTRUM_CORE_RADIUS = 2.5


def spectrum_features(t: torch.Tensor, occ: torch.Tensor) -> torch.Tensor:
    """(B, 26) cell-energy spectrum per shower: ``ln(1 + n_b)``, ``n_b`` the occupied cells whose
    log energy ``t`` falls in bin ``b`` of :data:`SPECTRUM_CENTRES` (triangular kernels of width
    1, so the counts are differentiable in ``t``), in the core (``r < 2.5`` cells from the shower
    axis) and in the halo. Hits above 10 keV and the spectrum separation power of ``caloforge
    validate`` are sums over these bins; the halo's spectrum is where a generator that gets
    the energy of each ring right can still put it into too few, too hot cells."""
    _, nx, ny, _ = t.shape
    ix = torch.arange(nx, dtype=t.dtype, device=t.device) - (nx - 1) / 2
    iy = torch.arange(ny, dtype=t.dtype, device=t.device) - (ny - 1) / 2
    core = (torch.sqrt(ix[:, None] ** 2 + iy[None, :] ** 2) < SPECTRUM_CORE_RADIUS).to(t.dtype)
    regions = (core, 1.0 - core)
    out = []
    for c in SPECTRUM_CENTRES:
        k = torch.clamp(1.0 - (t - c).abs(), min=0.0) * occ                 # (B, X, Y, Z)
        per_xy = k.sum(dim=3)                                               # (B, X, Y)
        out += [(per_xy * m).sum(dim=(1, 2)) for m in regions]
    return torch.log1p(torch.stack(out, dim=1))


def feature_weights(n_layers: int = 25) -> torch.Tensor:
    """Weights of the features in :func:`grouped_moment_loss`: the one-number summaries a
    physicist calibrates on (response x 10; total hits, depth centroid and spread x 5) count as
    much as a whole per-layer block, each per-layer feature 1."""
    w = torch.ones(n_features(n_layers))
    w[0] = 10.0
    w[-3:] = 5.0
    return w


def grouped_moment_loss(fake: torch.Tensor, real: torch.Tensor, energy: torch.Tensor,
                        scale: torch.Tensor, n_groups: int,
                        weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and width matching of features per energy group.

    ``fake`` and ``real`` (B, F) are features of showers at the *same* primary energies
    ``energy`` (B,); the batch is sorted by energy and cut into ``n_groups`` groups; per group
    and feature the means and the standard deviations are compared, in units of ``scale`` (F,)
    (the data's feature spread), weighted by ``weights`` (default :func:`feature_weights`).
    For a correct generator both differences vanish in expectation,
    so the loss is an unbiased, low-noise signal on exactly what validation measures (response and
    resolution per energy, hits, profiles). Returns (mean term, width term).
    """
    w = (feature_weights((fake.shape[1] - 4) // 5) if weights is None else weights).to(fake.device)
    w = w / w.sum()
    order = torch.argsort(energy)
    f, r = fake[order], real[order]
    mean_terms, std_terms = [], []
    for idx in torch.tensor_split(torch.arange(len(order), device=fake.device), n_groups):
        if len(idx) < 2:
            continue
        fg, rg = f[idx], r[idx]
        mean_terms.append(((fg.mean(0) - rg.mean(0)).abs() / scale * w).sum())
        std_terms.append(((fg.std(0) - rg.std(0)).abs() / scale * w).sum())
    return torch.stack(mean_terms).mean(), torch.stack(std_terms).mean()
