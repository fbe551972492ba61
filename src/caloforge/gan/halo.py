"""The far halo's steps of ``calibrate_prior(match="halo")`` (:mod:`caloforge.gan.calibrate`).

What they fix: below ~50 GeV the cells far from the shower axis (>= 8 cells) are hit a few
times per thousand showers, so at the low prior knots neither a cell's own hits nor its ring
in its layer reach the hits the other modes need (3 for the mean ln E, 30 for a spread):
those cells kept the energies and noise strengths the training left (measured on the sixth
default, 10-20 GeV: ln E when hit sd 1.86 vs the MC's 1.35, mean -9.52 vs -8.99; the MC's
far-halo cells are nearly the same at every energy and in every layer, docs/gan.md). Here
the missing statistics come from a *band*: three adjacent rings about the axis, pooled over
all layers, and over only the cells that the finer steps skip at that knot.

Measured on the sixth default at 10 GeV, the far halo's excess spread is mostly *between*
cells: the network's output at a far cell hardly varies from shower to shower (sd 0.06 within
a cell), but its mean differs from cell to cell (sd 1.3), while the MC's far cells are alike.
So the model's side is taken per cell from every shower, hit or not: the energy the cell
would have if it fired (its log energy, noise and layer term, rescaled with its layer,
:func:`would_be_log`), which a few hundred showers give for every cell. Per prior knot ``k``
and far cell ``c`` whose own hits are too few in the MC or in the model (hat-weighted hits,
:class:`caloforge.gan.calibrate._Marginals`), with at least :data:`MIN_BAND_HITS` MC hits in
its band:

    prior_sparse[1][k, c]  += <ln E>_MC,band - <ln E would-be>_model,c        (+-1 per pass)
    noise_val_knots[k, c]  *= sd_MC,band / sd_model,band                     (2/3..1.5 per pass)

the spreads of ln E about the band's MC mean and, for the model, about each cell's own
would-be mean, pooled over the band's hits in the cells whose ring in their layer lacks the
hits too (the other modes' spread steps need 30 in the cell or its ring). The strength stays
within the bounds of the ``layer`` steps (factor >= 1/16, strength <= ``cap``). No other
entry moves: cells nearer the axis, the knots where a cell has its own statistics, the
occupancy logits and couplings, the skew and the layer-energy slope stay bitwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from caloforge.gan.cell_shares import MIN_NOISE_HITS, pool_groups, ring_groups, scaled_knots
from caloforge.gan.phase import PhaseGenerator

HALO_RING = 8            # the far halo: rings >= 8 cells from the grid's central column
BAND_WIDTH = 3           # a band: three adjacent rings, all layers
MIN_BAND_HITS = 30.0     # a band's mean and spread at a knot from >= 30 hits in each sample
MIN_MEAN_HITS = 3.0      # a cell's own mean ln E at a knot from >= 3 hits (calibrate._MIN_HITS)
_MEAN_STEP = 1.0         # largest step of the log energy per pass
MIN_WOULD = 5.0          # a cell's would-be mean at a knot from >= 5 (hat-weighted) showers
_RATIO = (2.0 / 3.0, 1.5)


@dataclass
class LogSums:
    """Hat-weighted sums per prior knot and cell (knots, cells) over the events where the cell
    is hit: hits, ln E and (ln E)^2; for the model also, over every shower with energy in the
    cell's layer, the weight and the sum of the would-be ln E (:func:`would_be_log`)."""

    hits: np.ndarray
    log1: np.ndarray
    log2: np.ndarray
    would_weight: np.ndarray | None = None
    would_log: np.ndarray | None = None


def would_be_log(gen: PhaseGenerator, z: torch.Tensor, energy: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(showers GeV, would-be ln E, valid), each (B, X, Y, Z), of ``gen`` at ``z``, ``energy``:
    the showers as ``gen(z, energy)`` makes them, and for every cell the log of the energy it
    would have if it fired -- its ``threshold x min(1 + e^v, e^16)`` times its layer's rescaling
    factor (read off the layer's most energetic fired cell, which the threshold never clamps),
    at least the threshold; ``valid``: the layer has a fired cell."""
    from caloforge.gan.sparse import sparse_gev

    thr = float(gen.cell_threshold_gev)
    logit, value, target, width2 = gen._sparse_inputs(z, energy, None)
    showers = sparse_gev(logit, value, target, thr, width2=width2)
    raw = thr * torch.clamp(torch.exp(value) + 1.0, max=float(np.exp(16.0)))
    b, nx, ny, nz = raw.shape
    x0 = torch.where(logit > 0, raw, 0.0).reshape(b, nx * ny, nz)
    top = x0.argmax(dim=1, keepdim=True)                                       # (B, 1, Z)
    top_raw = torch.gather(x0, 1, top)[:, 0]
    top_final = torch.gather(showers.reshape(b, nx * ny, nz), 1, top)[:, 0]
    valid = top_raw > 0                                                        # (B, Z)
    factor = torch.where(valid, top_final / top_raw.clamp_min(1e-30), 1.0)
    would = torch.log(torch.clamp(raw * factor[:, None, None, :], min=thr))
    return showers, would, valid[:, None, None, :].expand_as(would)


class WouldBe:
    """Hat-weighted sums per prior knot and cell of the would-be ln E of every shower
    (:func:`would_be_log`) over the showers where it is valid."""

    def __init__(self, knots: int, cells: int) -> None:
        self.weight = np.zeros((knots, cells))
        self.log = np.zeros((knots, cells))

    def add(self, hat: np.ndarray, would: np.ndarray, valid: np.ndarray) -> None:
        """``hat`` (B, K) knot weights; ``would`` and ``valid`` (B, X, Y, Z) as
        :func:`would_be_log` returns them."""
        n = len(would)
        ok = valid.reshape(n, -1).astype(np.float64)
        self.weight += hat.T @ ok
        self.log += hat.T @ (ok * would.reshape(n, -1).astype(np.float64))


def band_groups(shape: tuple[int, int, int]) -> np.ndarray:
    """Per cell of a (X, Y, Z) grid (flattened, layer axis last): its band index (rings
    ``HALO_RING + 3b .. HALO_RING + 3b + 2`` about the central column, all layers), -1 for a
    cell nearer the axis than :data:`HALO_RING`."""
    ring = ring_groups(shape) // shape[2]
    return np.where(ring >= HALO_RING, (ring - HALO_RING) // BAND_WIDTH, -1)


def _pool(values: np.ndarray, bands: np.ndarray, mask: np.ndarray, size: int) -> np.ndarray:
    """(knots, size): per knot the sum of ``values`` over the masked cells of each band."""
    keep = mask & (bands >= 0)[None]
    out = np.zeros((len(values), size))
    for k in range(len(values)):
        out[k] = np.bincount(bands[keep[k]], weights=values[k][keep[k]], minlength=size)
    return out


def _band_moments(s: LogSums, bands: np.ndarray, mask: np.ndarray, size: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(knots, size) each: hits, mean and spread of ln E over the masked cells of a band."""
    n = _pool(s.hits, bands, mask, size)
    safe = np.maximum(n, 1e-12)
    mean = _pool(s.log1, bands, mask, size) / safe
    var = np.maximum(_pool(s.log2, bands, mask, size) / safe - mean ** 2, 0.0)
    return n, mean, np.sqrt(var)


def halo_steps(gen: PhaseGenerator, data: LogSums, model: LogSums, cap: np.ndarray
               ) -> dict[str, int]:
    """Step ``gen``'s far-halo log energies and per-knot noise strengths in place (module doc)
    from the MC's sums and the model's (with its would-be sums); ``cap`` per cell: the largest
    strength (np.inf: none). Returns how many (knot, cell) entries each step moved."""
    if model.would_weight is None or model.would_log is None:
        raise ValueError("halo_steps: the model's sums need the would-be ln E")
    shape = tuple(gen.noise_skew.shape[1:])
    bands = band_groups(shape)  # type: ignore[arg-type]
    rings = ring_groups(shape)  # type: ignore[arg-type]
    size = int(bands.max()) + 1
    far = (bands >= 0)[None]
    idx = np.where(bands >= 0, bands, 0)
    everywhere = np.ones_like(data.hits, dtype=bool)
    n_d, m_d, s_d = (a[:, idx] for a in _band_moments(data, bands, everywhere, size))
    band_ok = n_d >= MIN_BAND_HITS
    would_ok = model.would_weight >= MIN_WOULD
    m_c = model.would_log / np.maximum(model.would_weight, 1e-12)   # the cell's would-be mean

    lacks_mean = ~((data.hits >= MIN_MEAN_HITS) & (model.hits >= MIN_MEAN_HITS))
    mean_cells = far & lacks_mean & band_ok & would_ok
    d_mean = np.where(mean_cells, np.clip(m_d - m_c, -_MEAN_STEP, _MEAN_STEP), 0.0)

    own = (data.hits >= MIN_NOISE_HITS) & (model.hits >= MIN_NOISE_HITS)
    ring = ((pool_groups(data.hits, rings) >= MIN_NOISE_HITS)
            & (pool_groups(model.hits, rings) >= MIN_NOISE_HITS))
    thin = far & ~own & ~ring & would_ok
    # the model's spread about each cell's own would-be mean, pooled over the band's thin cells
    m_safe = np.where(would_ok, m_c, 0.0)
    sq = model.log2 - 2.0 * m_safe * model.log1 + m_safe ** 2 * model.hits
    n_m = _pool(model.hits, bands, thin, size)[:, idx]
    s_m = np.sqrt(np.maximum(_pool(sq, bands, thin, size)[:, idx], 0.0) / np.maximum(n_m, 1e-12))
    spread_cells = thin & band_ok & (n_m >= MIN_BAND_HITS)
    ratio = np.where(spread_cells, np.clip(s_d / np.maximum(s_m, 1e-6), *_RATIO), 1.0)
    with torch.no_grad():
        gen.prior_sparse[1] += torch.from_numpy(d_mean).float()
        moved = torch.from_numpy(spread_cells)
        gen.noise_val_knots.copy_(torch.where(moved, scaled_knots(gen, ratio, cap),
                                              gen.noise_val_knots))
    return {"mean": int(mean_cells.sum()), "spread": int(spread_cells.sum())}


__all__ = ["BAND_WIDTH", "HALO_RING", "MIN_BAND_HITS", "LogSums", "WouldBe", "band_groups",
           "halo_steps", "would_be_log"]
