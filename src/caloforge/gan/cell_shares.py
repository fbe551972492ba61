"""A cell's share of its layer's energy: the statistics and steps of ``calibrate_prior(match=
"layer")`` (:mod:`caloforge.gan.calibrate`) for a generator with the layer-energy coupling.

Per prior knot and cell, over the events where the cell is hit, the power sums of ``y = ln(E_c /
E_l)`` and of the layer's energy excess ``x`` give the slope of ``y`` on ``x``, the spread of ``y``
about that line and its skewness; the generator's ``value_layer``, ``noise_val_knots`` and
``noise_skew`` are stepped by the MC-minus-model differences (ratio for the spread), from a cell's
own hits where it has enough, else from its ring about the shower axis (the MC is symmetric
about it). Why: the cells of a generator whose layer energies are drawn from a library never
see the layer energy, while in the MC a layer with more energy than usual belongs to a shower
that is further developed there (slopes 0.8 for the core cell, 1.5-1.8 for the first two rings
of layer 10 at 220 GeV), and the share scatters less at higher energies (more particles).

Bounds on the totals, not only the steps (the statistic of some cells does not follow the
parameter: a layer's sole hit has a share of 1 whatever its noise, a corner cell's ring slope
is that of cells hit in other showers): ``value_layer`` within +-2.5 (the MC's largest slopes
are below 2), the strength factor ``noise_val_knots`` >= 1/16 (a trained strength made at most
16x narrower; the upper bound is the cap on the strength itself, 1.5x the MC's spread of the
cell's ln E).
"""

from __future__ import annotations

import numpy as np
import torch

from caloforge.gan.phase import PhaseGenerator

MIN_NOISE_HITS = 30.0    # a spread at a knot from >= 30 hits in each sample
MIN_SKEW_HITS = 100.0    # the skewness of a cell's ln E from >= 100 hits in each sample
_SKEW_STEP = 0.15        # largest step of a cell's skew parameter k per pass
#: -0.7 <= k <= 0: the noise's skewness in [-2.5, 0]. Only skewed to low values (the MC's
#: cells are, everywhere): for k < 0 the noise has an upper bound (``n + k (n^2 - 1)`` peaks
#: at ``n = -1 / 2k``), while k > 0 gives it a ``k n^2`` upper tail, i.e. rare halo cells with
#: GeV energies (seen: a cell at the edge with 4x the MC's mean x profile)
_SKEW_RANGE = (-0.7, 0.0)
_MIN_SLOPE_HITS = 100.0  # a ring's slope on the layer-energy excess from >= 100 hits in each
_SLOPE_STEP = 0.5        # largest step of value_layer per pass
SLOPE_BOUND = 2.5        # |value_layer| <= 2.5
KNOT_FLOOR = 1.0 / 16.0  # noise_val_knots >= 1/16


class CellShares:
    """Hat-weighted power sums per prior knot and cell, over the events where the cell is hit,
    of ``y = ln(E_c / E_l)`` (the cell's share of its layer's energy) and ``x = ln(E_l + t) -
    <ln(E_l + t)>_E`` (its layer's energy excess over the library's mean at the event's energy,
    :meth:`caloforge.gan.layers.LayerEnergySampler.log_mean`): the slope of ``y`` on ``x``, the
    spread of ``y`` about that line and the skewness of ``y``."""

    _KEYS = ("n", "x", "y", "xx", "xy", "yy", "yyy")

    def __init__(self, knots: int, cells: int) -> None:
        self.sums: dict[str, np.ndarray] = {k: np.zeros((knots, cells)) for k in self._KEYS}

    def add(self, hat: np.ndarray, images: np.ndarray, excess: np.ndarray) -> None:
        """``images`` (B, X, Y, Z) GeV with exact zeros, ``excess`` (B, Z)."""
        n = len(images)
        layer = images.sum(axis=(1, 2), dtype=np.float64)                        # (B, Z)
        share = images / np.where(layer > 0, layer, 1.0)[:, None, None, :]
        flat = share.reshape(n, -1)
        hit = flat > 0
        y = np.log(np.where(hit, flat, 1.0))
        x = np.broadcast_to(excess[:, None, None, :], images.shape).reshape(n, -1)
        x = np.where(hit, x, 0.0)
        self.sums["n"] += hat.T @ hit
        for key, a, b, c in (("x", x, None, None), ("y", y, None, None), ("xx", x, x, None),
                             ("xy", x, y, None), ("yy", y, y, None), ("yyy", y, y, y)):
            v = a if b is None else a * b if c is None else a * b * c   # one product at a time
            self.sums[key] += hat.T @ v

    def _central(self, sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = np.maximum(sums["n"], 1e-12)
        mx, my = sums["x"] / n, sums["y"] / n
        vx = np.maximum(sums["xx"] / n - mx * mx, 0.0)
        vy = np.maximum(sums["yy"] / n - my * my, 0.0)
        cxy = sums["xy"] / n - mx * my
        m3 = sums["yyy"] / n - 3.0 * my * sums["yy"] / n + 2.0 * my ** 3
        return {"n": sums["n"], "vx": vx, "vy": vy, "cxy": cxy, "m3": m3}

    def _pool_knots(self, per_knot: np.ndarray, n: np.ndarray) -> np.ndarray:
        return (per_knot * n).sum(axis=0) / np.maximum(n.sum(axis=0), 1e-12)

    def residual_spread(self) -> np.ndarray:
        """(knots, cells): the spread of ``y`` about its least-squares line in ``x`` within
        each knot."""
        c = self._central(self.sums)
        return np.sqrt(np.maximum(c["vy"] - c["cxy"] ** 2 / np.maximum(c["vx"], 1e-12), 0.0))

    @property
    def hits(self) -> np.ndarray:
        """(knots, cells): the hat-weighted hits."""
        return self.sums["n"]

    def skew(self) -> np.ndarray:
        """Per cell: the skewness of ``y``, central moments about each knot's mean pooled over
        the knots (hits-weighted)."""
        c = self._central(self.sums)
        return (self._pool_knots(c["m3"], c["n"])
                / np.maximum(self._pool_knots(c["vy"], c["n"]), 1e-12) ** 1.5)

    def slope(self) -> np.ndarray:
        """(knots, cells): the least-squares slope of ``y`` on ``x`` within each knot."""
        c = self._central(self.sums)
        return c["cxy"] / np.maximum(c["vx"], 1e-12)

    def grouped(self, groups: np.ndarray) -> CellShares:
        """The sums of each cell's group (``groups``: a group index per cell, e.g. its layer and
        ring about the shower axis, :func:`ring_groups`) given to every cell of the group: the
        MC is symmetric about the axis, and a halo cell's own hundred hits make a noisy slope
        and no spread at all where it has fewer than thirty."""
        out = CellShares(*self.sums["n"].shape)
        out.sums = {key: pool_groups(v, groups) for key, v in self.sums.items()}
        return out


def pool_groups(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(knots, cells): per knot, the sum of ``values`` (knots, cells) over each cell's group
    (``groups``: a group index per cell, e.g. :func:`ring_groups`), given to every cell of it."""
    size = int(groups.max()) + 1
    pooled = np.stack([np.bincount(groups, weights=row, minlength=size) for row in values])
    return pooled[:, groups]


def scaled_knots(gen: PhaseGenerator, ratio: np.ndarray, cap: np.ndarray) -> torch.Tensor:
    """``gen.noise_val_knots`` times ``ratio`` (knots, cells), kept >= :data:`KNOT_FLOOR` and
    with the strength ``|noise_val| x factor`` <= ``cap`` per cell (the cap wins over the
    floor): the bounded per-knot strength step the ``layer``, ``halo`` and ``depth`` steps
    share. Returns the new table; the caller writes it (where its step reaches)."""
    scale = gen.noise_val_knots * torch.from_numpy(ratio).float()
    base = gen.noise_val.detach().abs().reshape(1, -1).clamp_min(1e-6)
    return torch.minimum(scale.clamp_min(KNOT_FLOOR), torch.from_numpy(cap).float()[None] / base)


def ring_groups(shape: tuple[int, int, int]) -> np.ndarray:
    """Per cell of a (X, Y, Z) grid (flattened, layer axis last): the index of its (ring,
    layer), the ring being the distance from the grid's central column rounded to a cell."""
    nx, ny, nz = shape
    x, y, z = np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij")
    ring = np.rint(np.hypot(x - (nx - 1) / 2.0, y - (ny - 1) / 2.0)).astype(np.int64)
    return (ring * nz + z).reshape(-1)


def skew_step(gen: PhaseGenerator, d_skew: np.ndarray) -> None:
    """``noise_skew += d_skew / 6`` (d skew / dk = 6 at k = 0, :func:`caloforge.gan.sparse.
    skew_of`), +-0.15 per pass, kept in [-0.7, 0]."""
    dk = np.clip(d_skew / 6.0, -_SKEW_STEP, _SKEW_STEP)
    k = gen.noise_skew + torch.from_numpy(dk).float().reshape(gen.noise_skew.shape)
    gen.noise_skew.copy_(k.clamp(*_SKEW_RANGE))


def own_or_ring(own: np.ndarray, own_ok: np.ndarray, ring: np.ndarray, ring_ok: np.ndarray
                ) -> np.ndarray:
    """A cell's own statistic where it has the hits, else its ring's, else 0 (no step)."""
    return np.where(own_ok, own, np.where(ring_ok, ring, 0.0))


def share_steps(gen: PhaseGenerator, data: CellShares, data_ring: CellShares, model: CellShares,
                groups: np.ndarray, cap: np.ndarray) -> None:
    """The steps of ``match="layer"`` beyond the mean ones, from the shares ``y = ln(E_c /
    E_l)`` of the MC (``data``, ``data_ring`` its ring-pooled sums) and of the model, each
    from a cell's own hits where it has enough, else from its ring's (:meth:`CellShares.grouped`):

    * ``noise_val_knots`` (the strength at each knot) by the ratio of the spreads of ``y``
      about its line in ``x`` (>= 30 hits at the knot in each sample; 2/3..1.5 per pass;
      ``noise_val`` itself stays), the strength kept <= ``cap`` (1.5x the MC's spread of the
      cell's ln E);
    * ``noise_skew`` by the difference of the skewnesses of ``y`` over 6 (>= 100 hits);
    * ``value_layer`` by the difference of the ring's slopes of ``y`` on ``x`` (>= 100 hits in
      the ring; +-0.5 per pass, the total within +-2.5)."""
    model_ring = model.grouped(groups)

    def at_knots(a: CellShares, b: CellShares) -> tuple[np.ndarray, np.ndarray]:
        ok = (a.hits >= MIN_NOISE_HITS) & (b.hits >= MIN_NOISE_HITS)
        return a.residual_spread() / np.maximum(b.residual_spread(), 1e-6), ok

    ratio = own_or_ring(*at_knots(data, model), *at_knots(data_ring, model_ring))
    ratio = np.where(ratio > 0, np.clip(ratio, 2.0 / 3.0, 1.5), 1.0)
    gen.noise_val_knots.copy_(scaled_knots(gen, ratio, cap))

    def pooled(a: CellShares, b: CellShares) -> tuple[np.ndarray, np.ndarray]:
        ok = (a.hits.sum(axis=0) >= MIN_SKEW_HITS) & (b.hits.sum(axis=0) >= MIN_SKEW_HITS)
        return a.skew() - b.skew(), ok

    skew_step(gen, own_or_ring(*pooled(data, model), *pooled(data_ring, model_ring)))
    ring_ok = (data_ring.hits >= _MIN_SLOPE_HITS) & (model_ring.hits >= _MIN_SLOPE_HITS)
    d_slope = np.where(ring_ok, np.clip(data_ring.slope() - model_ring.slope(), -_SLOPE_STEP,
                                        _SLOPE_STEP), 0.0)
    gen.value_layer.copy_((gen.value_layer + torch.from_numpy(d_slope).float())
                          .clamp(-SLOPE_BOUND, SLOPE_BOUND))


__all__ = ["KNOT_FLOOR", "MIN_NOISE_HITS", "MIN_SKEW_HITS", "SLOPE_BOUND", "CellShares",
           "own_or_ring", "pool_groups", "ring_groups", "scaled_knots", "share_steps", "skew_step"]
