"""A cell's share of its layer that follows the whole shower's depth: the statistics and steps
of ``calibrate_prior(match="depth")`` (:mod:`caloforge.gan.calibrate`).

What they fix (measured on the sixth default, docs/gan.md): in the MC the core's transverse
width follows the shower's depth -- at 100-500 GeV the core second moment correlates with the
longitudinal centroid at -0.79, and the widths of neighbouring layers at 0.3-0.6 -- because the
Grindhammer-Peters core radius grows with ``tau = t / T`` (hep-ex/0001020, eq. for ``R_C``): at a
given layer a shower whose maximum lies deeper is narrower. The model's cells saw the primary
energy and their own layer's energy excess (``value_layer``) only: correlation -0.04, widths of
neighbouring layers 0.05-0.26. A cell's log energy now also moves by ``value_depth[c](E) x d``,
``d`` the shower's *depth excess*: the layer-energy-weighted mean layer index ``sum_l l E_l /
sum_l E_l`` minus its mean at this energy (``depth_mean``, hat-interpolated like the prior).

Per prior knot and (ring, layer) group (:func:`caloforge.gan.cell_shares.ring_groups`), over
the events where a cell is hit, ``y = ln(E_c / E_l)`` is fitted on both ``x`` (the layer's
energy excess) and ``d`` by least squares; the MC's and the model's partial slopes and the
spreads about the plane give the steps (the MC alone says which of the two a share follows:
at 100-200 GeV, layer 12, rings 1-4 the MC's share follows ``x`` with 0.05 / -0.24 / -0.81 /
-0.72 and ``d`` with -0.14 / -0.19 / -0.15 / -0.11 once both are in the fit):

    value_layer[k, c]      += bx_MC - bx_model          (+-0.5 per pass, total within +-2.5)
    value_depth[k, c]      += bd_MC - bd_model          (+-0.5 per pass, total within +-0.5)
    noise_val_knots[k, c]  *= s_MC / s_model            (2/3..1.5 per pass)

a group needing at least 100 hits at the knot in each sample for the slopes and 30 for the
spread (a cell's own 30 hits where it has them, else its group's), and only in the cells less
than :data:`DEPTH_RINGS` from the axis (rounded distance: the core, where the width is made and
the hits are many); every entry of the other cells stays bitwise. Fitting the depth slope on
top of the existing coupling instead (a post-hoc test on 10k showers) overshot the width's
spread and raised the classifier AUC 0.821 -> 0.831: the two slopes and the spread are fitted
together here.
"""

from __future__ import annotations

import numpy as np
import torch

from caloforge.gan.cell_shares import (
    MIN_NOISE_HITS,
    SLOPE_BOUND,
    own_or_ring,
    pool_groups,
    scaled_knots,
)
from caloforge.gan.phase import PhaseGenerator

MIN_SLOPE_HITS = 100.0   # a group's two slopes at a knot from >= 100 hits in each sample
#: the steps reach the cells less than this many cells from the axis (rounded distance, as
#: :func:`~caloforge.gan.cell_shares.ring_groups`): further out a first version (steps in all
#: rings) drove ``value_depth`` to its +-1.5 three-pass limit in cells near the threshold (where
#: ``softplus`` flattens the response), and the total ``m2_x`` spread grew 1.3-1.4x (10k showers)
DEPTH_RINGS = 6
DEPTH_BOUND = 0.5        # |value_depth| <= 0.5 (the MC's partial slopes in the core: |b| < 0.3)
_SLOPE_STEP = 0.5        # largest step of value_layer / value_depth per pass
_RATIO = (2.0 / 3.0, 1.5)


def layer_depth(layer_energies: np.ndarray) -> np.ndarray:
    """(B,): ``sum_l l E_l / sum_l E_l`` of layer energies (B, Z), 0 for an empty shower (as
    ``PhaseGenerator._depth_excess`` before the mean is subtracted, which divides by at least
    the cell threshold: the two differ only for a shower below 1e-6 GeV in all)."""
    e = np.asarray(layer_energies, dtype=np.float64)
    tot = e.sum(axis=1)
    idx = np.arange(e.shape[1], dtype=np.float64)
    return np.where(tot > 0, (e @ idx) / np.where(tot > 0, tot, 1.0), 0.0)


class DepthShares:
    """Hat-weighted sums per prior knot and cell, over the events where the cell is hit, of
    ``y = ln(E_c / E_l)``, ``x`` (the layer's energy excess) and ``d`` (the depth excess): the
    two-variable least-squares fit of ``y`` and the spread about it."""

    _KEYS = ("n", "x", "d", "y", "xx", "dd", "xd", "xy", "dy", "yy")

    def __init__(self, knots: int, cells: int) -> None:
        self.sums: dict[str, np.ndarray] = {k: np.zeros((knots, cells)) for k in self._KEYS}

    def add(self, hat: np.ndarray, images: np.ndarray, excess: np.ndarray, depth: np.ndarray
            ) -> None:
        """``images`` (B, X, Y, Z) GeV with exact zeros, ``excess`` (B, Z), ``depth`` (B,)."""
        n = len(images)
        layer = images.sum(axis=(1, 2), dtype=np.float64)                        # (B, Z)
        flat = (images / np.where(layer > 0, layer, 1.0)[:, None, None, :]).reshape(n, -1)
        hit = flat > 0
        y = np.log(np.where(hit, flat, 1.0))
        x = np.broadcast_to(excess[:, None, None, :], images.shape).reshape(n, -1)
        x = np.where(hit, x, 0.0)
        d = np.where(hit, np.asarray(depth, dtype=np.float64)[:, None], 0.0)
        self.sums["n"] += hat.T @ hit
        values = {"x": x, "d": d, "y": y}
        for key in self._KEYS[1:]:
            v = values[key] if len(key) == 1 else values[key[0]] * values[key[1]]
            self.sums[key] += hat.T @ v

    @property
    def hits(self) -> np.ndarray:
        """(knots, cells): the hat-weighted hits."""
        return self.sums["n"]

    def fit(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(bx, bd, spread, ok), each (knots, cells): the partial slopes of ``y`` on ``x`` and
        ``d``, the spread of ``y`` about the plane, and where the fit is possible (``x`` and
        ``d`` not collinear; elsewhere the slopes are 0 and the spread is that of ``y``)."""
        s = self.sums
        n = np.maximum(s["n"], 1e-12)
        m = {k: s[k] / n for k in ("x", "d", "y")}

        def cov(a: str, b: str) -> np.ndarray:
            return s[a + b] / n - m[a] * m[b]

        cxx, cdd, cxd = cov("x", "x"), cov("d", "d"), cov("x", "d")
        cxy, cdy, vy = cov("x", "y"), cov("d", "y"), cov("y", "y")
        det = cxx * cdd - cxd * cxd
        ok = det > 1e-9 * np.maximum(cxx * cdd, 1e-30)
        safe = np.where(ok, det, 1.0)
        bx = np.where(ok, (cdd * cxy - cxd * cdy) / safe, 0.0)
        bd = np.where(ok, (cxx * cdy - cxd * cxy) / safe, 0.0)
        spread = np.sqrt(np.maximum(vy - bx * cxy - bd * cdy, 0.0))
        return bx, bd, spread, ok

    def grouped(self, groups: np.ndarray) -> DepthShares:
        """The sums of each cell's group given to every cell of it (as
        :meth:`caloforge.gan.cell_shares.CellShares.grouped`)."""
        out = DepthShares(*self.sums["n"].shape)
        out.sums = {key: pool_groups(v, groups) for key, v in self.sums.items()}
        return out


def depth_means(hat: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """(knots,): the knot values ``m`` whose hat interpolation ``hat @ m`` fits the events'
    depths best (least squares; the minimum-norm solution, i.e. 0, at a knot without events):
    the depth's trend in ln E as the generator interpolates it, so that the depth excess has
    no offset between the knots (a hat-weighted mean per knot, interpolated back, was off by up
    to 0.2 layer at the ends of a log-uniform spectrum)."""
    sol, *_ = np.linalg.lstsq(np.asarray(hat, dtype=np.float64),
                              np.asarray(depth, dtype=np.float64), rcond=None)
    return np.where(np.asarray(hat).sum(axis=0) > 0, sol, 0.0)


def depth_steps(gen: PhaseGenerator, data: DepthShares, data_ring: DepthShares,
                model: DepthShares, groups: np.ndarray, cap: np.ndarray) -> None:
    """Step ``gen``'s ``value_layer``, ``value_depth`` and ``noise_val_knots`` in place (module
    doc); ``cap`` per cell bounds the strength (1.5x the MC's spread of the cell's ln E)."""
    model_ring = model.grouped(groups)
    bx_d, bd_d, s_d, fit_d = data_ring.fit()
    bx_m, bd_m, s_m, fit_m = model_ring.fit()
    near = np.broadcast_to((groups // int(gen.noise_skew.shape[-1]) < DEPTH_RINGS)[None, :],
                           bx_d.shape)
    keep = torch.from_numpy(~near)          # the cells the steps do not reach stay bitwise
    ok = near & fit_d & fit_m & (data_ring.hits >= MIN_SLOPE_HITS) \
        & (model_ring.hits >= MIN_SLOPE_HITS)
    for name, step, bound in (("value_layer", bx_d - bx_m, SLOPE_BOUND),
                              ("value_depth", bd_d - bd_m, DEPTH_BOUND)):
        t = getattr(gen, name)
        d = np.where(ok, np.clip(step, -_SLOPE_STEP, _SLOPE_STEP), 0.0)
        t.copy_(torch.where(keep, t, (t + torch.from_numpy(d).float()).clamp(-bound, bound)))
    own_d, own_m = data.fit(), model.fit()
    own_ok = own_d[3] & own_m[3] & (data.hits >= MIN_NOISE_HITS) & (model.hits >= MIN_NOISE_HITS)
    ring_ok = fit_d & fit_m & (data_ring.hits >= MIN_NOISE_HITS) \
        & (model_ring.hits >= MIN_NOISE_HITS)
    ratio = own_or_ring(own_d[2] / np.maximum(own_m[2], 1e-6), own_ok & (own_m[2] > 0),
                        s_d / np.maximum(s_m, 1e-6), ring_ok & (s_m > 0))
    ratio = np.where(near & (ratio > 0), np.clip(ratio, *_RATIO), 1.0)
    gen.noise_val_knots.copy_(torch.where(keep, gen.noise_val_knots,
                                          scaled_knots(gen, ratio, cap)))


__all__ = ["DEPTH_BOUND", "DEPTH_RINGS", "MIN_SLOPE_HITS", "DepthShares", "depth_means",
           "depth_steps", "layer_depth"]
