"""Hits per layer: the occupancy step of ``calibrate_prior(match="layer")``
(:mod:`caloforge.gan.hit_counts`).

The regressions are checked against data with a known linear dependence and one common factor
(the loading's closed form); the calibration itself on the project's MC in
``test_gan_calibrate_layer.py``.
"""

from __future__ import annotations

import numpy as np

from caloforge.gan.hit_counts import LayerHits


def test_regressions_recover_the_slope_and_the_one_factor_loading() -> None:
    """``n_l = 50 + 3 ln E + b_l x_l + u_l f + sigma e_l``: the slope is ``b_l``; the loading
    ``cov(r_l, S) / sd(S)`` of a one-factor model is ``(u_l U + sigma^2) / sqrt(U^2 + Z
    sigma^2)``, ``U = sum u``."""
    rng = np.random.default_rng(3)
    n_ev, layers, sigma = 20000, 6, 1.5
    b = np.array([0.0, 2.0, 5.0, 1.0, -1.0, 3.0])
    u = np.array([1.0, 4.0, 2.0, 0.5, 3.0, 0.0])
    ell = rng.uniform(-1.0, 1.0, n_ev)
    x = rng.normal(size=(n_ev, layers))
    f = rng.normal(size=(n_ev, 1))
    counts = 50.0 + 3.0 * ell[:, None] + b * x + u * f + sigma * rng.normal(size=(n_ev, layers))
    hits = LayerHits()
    hits.add_counts(np.ones((n_ev, 1)), counts, x, ell)
    slope, loading, sd = hits.regressions()
    np.testing.assert_allclose(slope[0], b, atol=0.1)        # 3x its statistical error
    total = u.sum()
    expected = (u * total + sigma ** 2) / np.sqrt(total ** 2 + layers * sigma ** 2)
    np.testing.assert_allclose(loading[0], expected, atol=0.08)
    np.testing.assert_allclose(sd[0], np.sqrt(total ** 2 + layers * sigma ** 2), rtol=0.02)


def test_share_steps_stop_at_their_bounds_where_the_statistic_does_not_respond() -> None:
    """A model whose share statistics never move (a cell's sole hit has a share of 1, whatever
    its parameters): repeated steps take ``value_layer`` to +2.5 and ``noise_val_knots`` down
    to 1/16, and no further (per pass they are limited to 0.5 and 2/3)."""
    import torch

    from caloforge.gan.cell_shares import (
        KNOT_FLOOR,
        SLOPE_BOUND,
        CellShares,
        ring_groups,
        share_steps,
    )
    from caloforge.gan.phase import PhaseGenerator

    gen = PhaseGenerator(layer_library=(2, 8), sparse=True, layer_occupancy=True)
    knots, cells = gen.noise_val_knots.shape
    n = 200.0

    def shares(slope: float, spread: float) -> CellShares:
        """Sums of ``n`` hits per knot and cell with x of mean 0 and variance 1, and y =
        slope x + noise of the given spread about the line."""
        s = CellShares(knots, cells)
        s.sums["n"][:] = n
        s.sums["xx"][:] = n
        s.sums["xy"][:] = slope * n
        s.sums["yy"][:] = (slope ** 2 + spread ** 2) * n
        return s

    data, model = shares(10.0, 0.01), shares(0.0, 1.0)
    groups = ring_groups((25, 25, 25))
    for _ in range(12):
        with torch.no_grad():
            share_steps(gen, data, data.grouped(groups), model, groups, np.full(cells, np.inf))
    assert float(gen.value_layer.min()) == float(gen.value_layer.max()) == SLOPE_BOUND
    assert float(gen.noise_val_knots.max()) == float(gen.noise_val_knots.min()) == KNOT_FLOOR
