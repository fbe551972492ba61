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
