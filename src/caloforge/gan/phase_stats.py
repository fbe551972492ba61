"""Data-derived buffers of the ``phase`` models: the per-cell prior, the feature units and the
layer-occupancy coupling, measured on MC files before a fresh training starts.

The prior's energy bins are equal steps in ``ln E``, so a training file drawn uniformly in E
puts few events in the lowest bins (2-3.5 GeV: ~0.3% of the events, a dozen of 4,000). When the
run has a layer-energy library file (simulated at energies equally spaced in ln E, 256 events
each), its events enter the prior too: every bin then holds ~1,600 events.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from caloforge.errors import UserError
from caloforge.gan.data import CELL_THRESHOLD_GEV
from caloforge.gan.layers import sampler_from
from caloforge.gan.model import ENERGY_SCALE_GEV
from caloforge.gan.phase import PRIOR_KNOTS

#: Largest per-layer occupancy coefficient (logit units per unit of ln layer energy).
MAX_OCC_COEF = 4.0
_MIN_BIN_EVENTS = 8


def _chunks(paths: Sequence[tuple[Any, int | None]], chunk: int = 1000
            ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(source index, images above the model threshold, energies) of the first ``n`` events of
    each file (None: all of them), in chunks."""
    from caloforge.data import open_showers

    for i, (path, n) in enumerate(paths):
        with open_showers(path) as f:
            stop = f.n_events if n is None else min(n, f.n_events)
            for img, e in f.iter_chunks(chunk, 0, stop):
                yield (i, np.where(img >= CELL_THRESHOLD_GEV, img, 0).astype(np.float32),
                       np.asarray(e, dtype=np.float64))


def _energies(paths: Sequence[tuple[Any, int | None]]) -> list[np.ndarray]:
    from caloforge.data import open_showers

    out = []
    for path, n in paths:
        with open_showers(path) as f:
            out.append(np.asarray(f.energies(), dtype=np.float64)[:n])
    return out


def _bin_sums(paths: Sequence[tuple[Any, int | None]], edges: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Per prior bin: events, hits per cell, energy per cell; per event the energy, the layer
    energies and the hits per layer; and the images of the first file."""
    n_cells = None
    events = np.zeros(len(edges) - 1)
    hits = energy = np.zeros(0)
    per_event: dict[str, list[np.ndarray]] = {"energy": [], "layer_gev": [], "layer_hits": []}
    first: list[np.ndarray] = []
    for source, img, e in _chunks(paths):
        if source == 0:
            first.append(img)
        if n_cells is None:
            n_cells = img[0].size
            hits = np.zeros((len(edges) - 1, n_cells))
            energy = np.zeros((len(edges) - 1, n_cells))
        b = np.clip(np.searchsorted(edges, np.log(e / ENERGY_SCALE_GEV), side="right") - 1,
                    0, len(edges) - 2)
        flat = img.reshape(len(img), -1)
        for k in np.unique(b):
            m = b == k
            events[k] += m.sum()
            hits[k] += (flat[m] > 0).sum(axis=0)
            energy[k] += flat[m].sum(axis=0, dtype=np.float64)
        per_event["energy"].append(e)
        per_event["layer_gev"].append(img.sum(axis=(1, 2), dtype=np.float64))
        per_event["layer_hits"].append((img > 0).sum(axis=(1, 2)))
    return (events, hits, energy, {k: np.concatenate(v) for k, v in per_event.items()},
            np.concatenate(first))


def phase_statistics(path: Any, n_events: int = 4000,
                     library_path: str | os.PathLike[str] | None = None) -> dict[str, np.ndarray]:
    """Data-derived buffers of the ``phase`` models, from the first ``n_events`` events of
    ``path`` (and, for the prior, every event of ``library_path`` when given).

    The per-cell prior at ``PRIOR_KNOTS`` energies (the centres of equal bins in ``l =
    ln(E/100)``; a bin with fewer than 8 events copies its nearest neighbour):

    * one-channel head: the log of the mean energy of the cell *when hit* (transformed units)
      for a cell hit in at least half of the showers, and ``max(-1 + logit(p_hit), -6)``
      (below zero: off) for a cell hit less often; cells never hit sit at -10;
    * sparse head (``prior_sparse``): occupancy logit ``probit(p_hit)`` (with unit noise the cell
      then fires with probability ``p_hit``) and the log of the mean energy when hit.

    Also the mean and spread of the high-level features of ``path``'s events (discriminator
    input standardisation, moment-loss units), and the per-event ``energy``, ``layer_gev`` and
    ``layer_hits`` of all events read (for :func:`layer_occupancy_coefficients`)."""
    from caloforge.gan.features import calibration_weights, shower_features

    sources: list[tuple[Any, int | None]] = [(path, n_events)]
    if library_path is not None:
        sources.append((library_path, None))
    energies = _energies(sources)
    if len(energies[0]) == 0:
        raise UserError(f"{path}: too few events for the phase architecture's prior")
    ell = np.log(np.concatenate(energies) / ENERGY_SCALE_GEV)
    edges = np.linspace(ell.min(), ell.max(), PRIOR_KNOTS + 1)
    knots = 0.5 * (edges[:-1] + edges[1:])
    events, hits, energy, per_event, first = _bin_sums(sources, edges)
    logs: list[np.ndarray | None] = []
    sparse: list[np.ndarray | None] = []
    for k, _ in enumerate(itertools.pairwise(edges)):
        if events[k] < _MIN_BIN_EVENTS:
            logs.append(None)
            sparse.append(None)
            continue
        p = np.clip(hits[k] / events[k], 1e-3, 1 - 1e-3)
        mean_hit = energy[k] / np.maximum(hits[k], 1)
        value = np.log(np.maximum(mean_hit, CELL_THRESHOLD_GEV) / CELL_THRESHOLD_GEV)
        u = np.where(p >= 0.5, value, np.maximum(-1.0 + np.log(p / (1 - p)), -6.0))
        logs.append(np.where(hits[k] > 0, np.maximum(u, -10.0), -10.0))
        probit = torch.special.ndtri(torch.from_numpy(p)).numpy()
        sparse.append(np.stack([np.where(hits[k] > 0, probit, -6.0),
                                np.where(hits[k] > 0, value, 0.0)]))
    filled = [k for k, v in enumerate(logs) if v is not None]
    if not filled:
        raise UserError(f"{path}: too few events for the phase architecture's prior")
    nearest = [min(filled, key=lambda j: abs(j - k)) for k in range(PRIOR_KNOTS)]
    prior = np.stack([logs[j] for j in nearest])  # type: ignore[misc]
    prior_sparse = np.stack([sparse[j] for j in nearest], axis=1)  # type: ignore[misc]  # (2, K, ...)
    x = torch.from_numpy(first)
    feats = shower_features(x, (x > 0).float(), torch.from_numpy(energies[0]).float(),
                            torch.from_numpy(calibration_weights())).numpy()
    return {"prior": prior.astype(np.float32), "prior_knots": knots.astype(np.float32),
            "prior_sparse": prior_sparse.astype(np.float32),
            "feature_mean": feats.mean(axis=0).astype(np.float32),
            "feature_std": np.maximum(feats.std(axis=0), 1e-3).astype(np.float32),
            **{f"event_{k}": v for k, v in per_event.items()}}


def _rank_one(cov: np.ndarray, iterations: int = 50) -> np.ndarray:
    """``v >= 0`` with ``v_i v_j`` closest (least squares) to the off-diagonal of ``cov``."""
    v = np.sqrt(np.maximum(np.diag(cov), 0.0)) * 0.5
    off = cov - np.diag(np.diag(cov))
    for _ in range(iterations):
        denom = (v ** 2).sum() - v ** 2
        # v_i = sum_j C_ij v_j / sum_j v_j^2 (j != i) alternates about its fixed point
        # (c -> C / c for equal entries): step to the geometric mean of the two
        v = np.sqrt(v * np.maximum(off @ v / np.maximum(denom, 1e-12), 0.0))
    return v


def layer_occupancy_coefficients(stats: dict[str, np.ndarray], library: dict[str, np.ndarray]
                                 ) -> tuple[np.ndarray, np.ndarray]:
    """Starting values of ``PhaseGenerator.occ_layer`` and ``occ_global`` (PRIOR_KNOTS, Z each),
    from the data.

    In a prior bin, a cell of layer ``l`` fires with probability ``Phi(mu_c + a_l r_l + g_l xi)``
    (``mu_c`` its probit prior, unit noise, ``r_l = ln(E_l + t) - <ln(E_l + t)>_E`` the layer's
    energy excess over the library mean at the event's energy, ``xi`` one standard normal per
    shower). To first order the layer's hit count moves by ``D_l (a_l r_l + g_l xi)``, ``D_l =
    sum_c phi(mu_c)``. So ``a_l = beta_l / D_l`` with ``beta_l`` the least-squares slope of the
    data's hits on ``r_l`` within the bin, and ``g_l = v_l / D_l`` with ``v v^T`` the rank-one fit
    to the off-diagonal covariance of the hits left over (after a linear fit in ``r_l`` and
    ``ln E`` per layer): the part of the hit fluctuation that all layers share. ``a`` is clipped
    to [0, ``MAX_OCC_COEF``], ``g`` to [0, 1]; a bin with fewer than 8 events copies its nearest
    neighbour."""
    table = library["table"]
    sampler = sampler_from(library)
    e = stats["event_energy"]
    with torch.no_grad():
        mean = sampler.log_mean(torch.from_numpy(e).float(), CELL_THRESHOLD_GEV).double().numpy()
    r = np.log(stats["event_layer_gev"] + CELL_THRESHOLD_GEV) - mean
    n_hits = stats["event_layer_hits"].astype(np.float64)
    prior_knots = stats["prior_knots"]
    half = 0.5 * (prior_knots[1] - prior_knots[0])
    probit = stats["prior_sparse"][0].reshape(len(prior_knots), -1, table.shape[2])  # (K, XY, Z)
    density = np.exp(-0.5 * probit.astype(np.float64) ** 2).sum(axis=1) / np.sqrt(2 * np.pi)
    ell = np.log(e / ENERGY_SCALE_GEV)
    # the prior's bins, as phase_statistics counts them (the end events on the end edges)
    edges = np.concatenate([prior_knots - half, [prior_knots[-1] + half]]).astype(np.float64)
    in_bin = np.clip(np.searchsorted(edges, ell, side="right") - 1, 0, len(prior_knots) - 1)
    coef: list[tuple[np.ndarray, np.ndarray] | None] = []
    for k in range(len(prior_knots)):
        m = in_bin == k
        if m.sum() < _MIN_BIN_EVENTS:
            coef.append(None)
            continue
        rc = r[m] - r[m].mean(axis=0)
        lc = ell[m] - ell[m].mean()
        nc = n_hits[m] - n_hits[m].mean(axis=0)
        beta = (rc * nc).sum(axis=0) / np.maximum((rc ** 2).sum(axis=0), 1e-12)
        resid = np.empty_like(nc)
        for layer in range(nc.shape[1]):  # hits left over after a linear fit in r_l and ln E
            design = np.stack([rc[:, layer], lc], axis=1)
            fit = np.linalg.lstsq(design, nc[:, layer], rcond=None)[0]
            resid[:, layer] = nc[:, layer] - design @ fit
        shared = _rank_one(np.cov(resid, rowvar=False))
        d = np.maximum(density[k], 1e-6)
        coef.append((np.clip(beta / d, 0.0, MAX_OCC_COEF), np.clip(shared / d, 0.0, 1.0)))
    filled = [k for k, v in enumerate(coef) if v is not None]
    if not filled:
        zeros = np.zeros((len(prior_knots), table.shape[2]), dtype=np.float32)
        return zeros, zeros.copy()
    rows = [coef[min(filled, key=lambda j: abs(j - k))] for k in range(len(prior_knots))]
    return (np.stack([a for a, _ in rows]).astype(np.float32),  # type: ignore[misc]
            np.stack([g for _, g in rows]).astype(np.float32))  # type: ignore[misc]


__all__ = ["MAX_OCC_COEF", "layer_occupancy_coefficients", "phase_statistics"]
