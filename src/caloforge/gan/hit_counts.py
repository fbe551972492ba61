"""Hits per layer and how they fluctuate together: the occupancy step of ``calibrate_prior(match=
"layer")`` (:mod:`caloforge.gan.calibrate`).

A generator with the layer-occupancy coupling moves the occupancy logit of every cell of layer
``l`` by ``occ_layer[l](E) x x_l + occ_global[l](E) x xi`` (``x_l`` the layer's energy excess,
``xi`` a latent number shared by all layers; :class:`caloforge.gan.phase.PhaseGenerator`).
Both were trained, and the training left the spread of the total hit count wrong: measured on
the fourth shipped default against 10k MC events, the residual of the total about its trend
in E was 1.3-1.5x the MC's below 40 GeV and 0.6-0.8x above 80 GeV, with its mean right (the
largest separation power left, of the sparsity). Here, per prior knot ``k`` and layer ``l``
(events weighted with the knots' interpolation weights in ln E), the hit count ``n_l`` is fitted
by least squares on ``(1, ln E, ln^2 E, o_l, o_l x_l)``, ``o_l`` = 1 where the layer has a hit
(a layer given no energy fires no cell, ``PhaseGenerator._layer_rule``; the step from none to
one hit is not the slope among layers with hits -- in layer 0, with one or two hits of ~1e-4
GeV, a layer with twice the energy has twice the hits):

* the slope ``b_l`` on ``o_l x_l`` (how much more a layer with more energy fires) steps
  ``occ_layer[k, l]`` by ``(b_MC - b_model) / D_l``;
* of the residuals ``r_l`` and their sum ``S`` over the layers, the loading ``u_l = cov(r_l, S)
  / sd(S)`` (a one-factor description of what the layers share beyond their own energies:
  ``sum_l u_l sd(S) = var(S)``) steps ``occ_global[k, l]`` by ``(u_MC - u_model) / D_l``;

``D_l`` being the model's mean number of extra hits in layer ``l`` per unit logit shift, ``sum
phi(m_c / s_c) / s_c`` over its cells (``m_c`` the logit without the cell's occupancy noise,
``s_c`` that noise's strength: :meth:`PhaseGenerator.fire_statistics`), so a step is a
Newton step of the linearised count. Steps within +-0.1 per pass, only where ``D_l >= 1``
(a layer that barely fires does not answer a logit shift). ``occ_global`` is kept >= 0, as
the training's starting values (:func:`caloforge.gan.phase_stats.layer_occupancy_coefficients`):
the loading is measured against the sum ``S``, so it is positive whatever the sign of
``occ_global`` -- a negative coupling would only ever be stepped further down; where the
model's layers share more than the MC's without any coupling (its network's own global
noise), the step stops at 0. ``occ_layer`` may be negative (within +-2; the trained values
are below 1): in the MC a layer behind the shower maximum that gets more energy than usual
has *fewer* hits at high energies (slopes of -10 to -40 hits per unit excess in layers 16-19
at 300-500 GeV: the shower is late, so there it is near its maximum, dense and narrow, not in
its wide tail). Allowing that alone changed little; what the hits missed was the other
layers' energies (``occ_cross``, below). Each pass re-measures the model on the same noise.

Each layer's hits are fitted on the energy excesses of *all* layers (``o_l x_m``, m = 1..Z):
the own slope steps ``occ_layer``, the others ``occ_cross[k, l, m]`` (the same Newton step,
+-0.1 per pass, within +-1, diagonal 0). In the MC the layer energies explain nearly all of
the total hit count at a fixed energy (at 125-500 GeV all but sd 29-35 of 76-105); with each
layer coupled to its own energy only, the fifth default's kept 55-62 of 62-80. Known limits:
the excesses of neighbouring layers are strongly correlated and the fit has no
regularisation (the shipped cross slopes alternate in sign along a row), and an empty layer
m enters with its excess of an empty layer (``ln t - <ln(E_m + t)>``), so the cross slope on
it partly says "layer m empty or not".
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from caloforge.gan.phase import PhaseGenerator

_STEP = 0.1       # largest step of occ_layer / occ_global per pass
_MIN_DENSITY = 1.0
OCC_LAYER_BOUND = 2.0  # |occ_layer| <= 2
OCC_CROSS_BOUND = 1.0  # |occ_cross| <= 1


class HitFit(NamedTuple):
    """:meth:`LayerHits.regressions`: per knot, the slopes of each layer's hits on its own
    energy excess (K, Z) and on the other layers' (K, Z, Z), the one-factor loadings of the
    residuals (K, Z) and the spread of their sum (K,)."""

    slope: np.ndarray
    loading: np.ndarray
    sd: np.ndarray
    cross: np.ndarray


class LayerHits:
    """Per event: the prior-knot weights (K), hits per layer (Z), the layer-energy excess (Z),
    ``ln(E / 100 GeV)`` and, for a model, the hit density per unit logit shift (Z)."""

    def __init__(self) -> None:
        self._parts: dict[str, list[np.ndarray]] = {k: [] for k in ("hat", "n", "x", "ell", "d")}

    def add(self, hat: np.ndarray, images: np.ndarray, excess: np.ndarray, ell: np.ndarray,
            density: np.ndarray | None = None) -> None:
        """``images`` (B, X, Y, Z) GeV with exact zeros below the threshold."""
        self.add_counts(hat, np.count_nonzero(images, axis=(1, 2)), excess, ell, density)

    def add_counts(self, hat: np.ndarray, counts: np.ndarray, excess: np.ndarray,
                   ell: np.ndarray, density: np.ndarray | None = None) -> None:
        """``counts`` (B, Z): hits per layer; ``hat`` (B, K), ``excess`` (B, Z), ``ell`` (B,),
        ``density`` (B, Z) or None."""
        self._parts["hat"].append(np.asarray(hat, dtype=np.float64))
        self._parts["n"].append(np.asarray(counts, dtype=np.float64))
        self._parts["x"].append(np.asarray(excess, dtype=np.float64))
        self._parts["ell"].append(np.asarray(ell, dtype=np.float64).reshape(-1))
        if density is not None:
            self._parts["d"].append(np.asarray(density, dtype=np.float64))

    def array(self, key: str) -> np.ndarray:
        return np.concatenate(self._parts[key])

    def density(self) -> np.ndarray:
        """(K, Z): the hat-weighted mean hit density per unit logit shift (a model's)."""
        hat = self.array("hat")
        return (hat.T @ self.array("d")) / np.maximum(hat.sum(axis=0), 1e-12)[:, None]

    def regressions(self) -> HitFit:
        """Per knot: the slope (K, Z) of each layer's hit count on its own energy excess, the
        slopes (K, Z, Z) on the other layers' excesses (``cross[k, l, m]``, diagonal 0), the
        loading (K, Z) of its residual on the residual sum ``S``, and sd(S) (K,) (module doc)."""
        hat, n, x, ell = (self.array(k) for k in ("hat", "n", "x", "ell"))
        knots, layers = hat.shape[1], n.shape[1]
        b, u, sd = np.zeros((knots, layers)), np.zeros((knots, layers)), np.zeros(knots)
        cross = np.zeros((knots, layers, layers))
        for k in range(knots):
            sel = hat[:, k] > 0
            w = hat[sel, k]
            if w.sum() < 10.0:   # too few events at this knot: no step
                continue
            root = np.sqrt(w)[:, None]
            base = np.stack([np.ones(sel.sum()), ell[sel], ell[sel] ** 2], axis=1)
            resid = np.zeros((sel.sum(), layers))
            for lay in range(layers):
                on = (n[sel, lay] > 0).astype(np.float64)[:, None]
                a = np.concatenate([base, on, on * x[sel]], axis=1)  # own excess and the others'
                coef = np.linalg.lstsq(a * root, n[sel, lay] * root[:, 0], rcond=None)[0]
                b[k, lay] = coef[4 + lay]
                cross[k, lay] = coef[4:]
                cross[k, lay, lay] = 0.0
                resid[:, lay] = n[sel, lay] - a @ coef
            total = resid.sum(axis=1)
            sd[k] = np.sqrt((w * total * total).sum() / w.sum())
            u[k] = (w[:, None] * resid * total[:, None]).sum(axis=0) / w.sum() / max(sd[k], 1e-9)
        return HitFit(b, u, sd, cross)


def occupancy_steps(gen: PhaseGenerator, data: HitFit, model: LayerHits) -> np.ndarray:
    """Step ``gen.occ_layer``, ``gen.occ_cross`` and ``gen.occ_global`` in place (module doc)
    from the MC's :meth:`LayerHits.regressions` ``data`` (fitted once: the MC does not change
    between passes) and the model's hits; returns sd(S) of the model over that of the MC per
    knot, before the step (1: the spread of the total matches)."""
    fit = model.regressions()
    density = model.density()
    ok = density >= _MIN_DENSITY

    def step(d: np.ndarray, dens: np.ndarray, mask: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.where(mask, np.clip(d / np.maximum(dens, _MIN_DENSITY),
                                                       -_STEP, _STEP), 0.0)).float()

    with torch.no_grad():
        gen.occ_layer.copy_((gen.occ_layer + step(data.slope - fit.slope, density, ok))
                            .clamp(-OCC_LAYER_BOUND, OCC_LAYER_BOUND))
        d_cross = step(data.cross - fit.cross, density[:, :, None], ok[:, :, None])
        cross = (gen.occ_cross + d_cross).clamp(-OCC_CROSS_BOUND, OCC_CROSS_BOUND)
        cross.diagonal(dim1=1, dim2=2).zero_()
        gen.occ_cross.copy_(cross)
        gen.occ_global.copy_((gen.occ_global + step(data.loading - fit.loading, density, ok))
                             .clamp_min(0.0))
    return fit.sd / np.maximum(data.sd, 1e-9)


__all__ = ["OCC_CROSS_BOUND", "OCC_LAYER_BOUND", "HitFit", "LayerHits", "occupancy_steps"]
