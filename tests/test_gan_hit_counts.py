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
    fit = hits.regressions()
    slope, loading, sd = fit.slope, fit.loading, fit.sd
    assert float(np.abs(fit.cross).max()) < 0.1          # no layer depends on another's energy
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


def test_regressions_take_the_step_to_a_first_hit_apart() -> None:
    """A layer that is empty in some events (``o = 0``, no hits): the slope among the events
    with hits is recovered although whether the layer fires depends on its energy excess too
    (a fit of the counts on ``x`` alone would mix the 0 -> 1 step into it)."""
    rng = np.random.default_rng(4)
    n_ev = 20000
    ell = rng.uniform(-1.0, 1.0, n_ev)
    x = rng.normal(size=(n_ev, 2))
    on = (x + rng.normal(size=(n_ev, 2)) > -0.3).astype(np.float64)   # fires more with more E
    slope = np.array([1.5, 4.0])
    counts = on * (20.0 + 2.0 * ell[:, None] + slope * x + rng.normal(size=(n_ev, 2)))
    counts = np.maximum(counts, on)          # a layer with a hit has at least one
    hits = LayerHits()
    hits.add_counts(np.ones((n_ev, 1)), counts, x, ell)
    b = hits.regressions().slope
    np.testing.assert_allclose(b[0], slope, atol=0.15)
    naive = np.polyfit(x[:, 1], counts[:, 1], 1)[0]
    assert abs(naive - slope[1]) > 2.0       # what the on/off column keeps out of the slope


def test_occupancy_steps_are_newton_steps_bounded_and_masked() -> None:
    """``occ_layer`` steps by (b_MC - b_model) / D, at most 0.1 per pass, not where the layer's
    hit density D < 1, may turn negative (the MC's deep layers at high energy) but stays within
    +-2; ``occ_cross[l, m]`` the same with the cross slopes and row l's density, within +-1,
    its diagonal kept 0; ``occ_global`` steps with the loadings and never goes below 0; the
    returned ratio is the model's sd(S) over the MC's."""
    import torch

    from caloforge.gan.hit_counts import OCC_CROSS_BOUND, OCC_LAYER_BOUND, occupancy_steps
    from caloforge.gan.phase import PhaseGenerator

    gen = PhaseGenerator(layer_library=(2, 8), sparse=True, layer_occupancy=True)
    knots, layers = gen.occ_layer.shape
    rng = np.random.default_rng(5)
    n_ev = 400
    model = LayerHits()
    density = np.full((n_ev, layers), 4.0)
    density[:, 3] = 0.5                                      # barely fires: no step
    model.add_counts(np.full((n_ev, knots), 1.0 / knots), rng.poisson(5.0, (n_ev, layers)),
                     rng.normal(size=(n_ev, layers)), rng.uniform(-1, 1, n_ev), density)
    fit = model.regressions()
    d_b = np.zeros((knots, layers))
    d_b[:, 0], d_b[:, 1], d_b[:, 3] = 0.2, 2.0, 2.0           # Newton 0.05; capped 0.1; masked
    d_b[:, 2] = d_b[:, 4] = -2.0                              # down by 0.1: to -0.05; to -2
    d_u = np.full((knots, layers), -0.2)                      # from 0.3: 0.3 - 0.05
    d_u[:, 5] = -2.0                                          # from 0.05: stops at 0
    with torch.no_grad():
        gen.occ_layer.fill_(0.05)
        gen.occ_layer[:, 4] = -1.95
        gen.occ_global.fill_(0.3)
        gen.occ_global[:, 5] = 0.05
    d_c = np.zeros((knots, layers, layers))
    d_c[:, 0, 1], d_c[:, 1, 0], d_c[:, 3, 0] = 0.2, -2.0, 2.0  # Newton 0.05; capped; masked
    d_c[:, 2, 2] = 2.0                                        # the diagonal: never set
    d_c[:, 5, 6] = 2.0                                        # from 0.95: stops at 1
    with torch.no_grad():
        gen.occ_cross[:, 5, 6] = 0.95
    ratio = occupancy_steps(gen, fit._replace(slope=fit.slope + d_b, loading=fit.loading + d_u,
                                              cross=fit.cross + d_c, sd=2.0 * fit.sd), model)
    np.testing.assert_allclose(ratio, 0.5)
    cross = gen.occ_cross.detach().numpy()
    np.testing.assert_allclose(cross[:, 0, 1], 0.05, rtol=1e-5)
    np.testing.assert_allclose(cross[:, 1, 0], -0.1, rtol=1e-5)
    np.testing.assert_allclose(cross[:, 3, 0], 0.0)
    np.testing.assert_allclose(cross[:, 5, 6], OCC_CROSS_BOUND)
    assert float(np.abs(np.diagonal(cross, axis1=1, axis2=2)).max()) == 0.0
    moved = np.zeros((layers, layers), dtype=bool)
    moved[[0, 1, 5], [1, 0, 6]] = True
    assert float(np.abs(cross[:, ~moved]).max()) < 1e-6     # nothing else moved
    occ = gen.occ_layer.detach().numpy()
    np.testing.assert_allclose(occ[:, 0], 0.05 + 0.05, rtol=1e-5)
    np.testing.assert_allclose(occ[:, 1], 0.05 + 0.1, rtol=1e-5)
    np.testing.assert_allclose(occ[:, 2], -0.05, rtol=1e-5)
    np.testing.assert_allclose(occ[:, 3], 0.05)
    np.testing.assert_allclose(occ[:, 4], -OCC_LAYER_BOUND)
    glob = gen.occ_global.detach().numpy()
    np.testing.assert_allclose(glob[:, 3], 0.3)
    np.testing.assert_allclose(glob[:, 5], 0.0)
    np.testing.assert_allclose(np.delete(glob, [3, 5], axis=1), 0.3 - 0.05, rtol=1e-5)


def test_fire_statistics_density_is_the_derivative_of_the_expected_hits() -> None:
    """``PhaseGenerator.fire_statistics``' density of layer l (the ``D`` of the Newton step)
    equals the finite difference of the layer's expected hits ``sum_c P_c`` when all its
    logits move by +-h (here through the occupancy prior of that layer; float64)."""
    import torch

    from caloforge.gan.phase import PhaseGenerator

    torch.manual_seed(6)
    gen = PhaseGenerator(sparse=True).double().eval()
    with torch.no_grad():
        gen.up2.weight.normal_(0.0, 0.3)
        gen.noise_occ.uniform_(0.5, 2.0)                 # strengths differ from cell to cell
        gen.prior_sparse[0].normal_(-1.0, 1.5)
    z = torch.randn(3, gen.latent_dim, dtype=torch.float64)
    e = torch.tensor([5.0, 60.0, 400.0], dtype=torch.float64)
    h = 1e-4
    prior = gen.prior_sparse.view(2, -1, 25, 25, 25)
    with torch.no_grad():
        _, _, density = gen.fire_statistics(z, e)
        expected = []
        for sign in (1.0, -1.0):
            prior[0, :, :, :, 7] += sign * h
            expected.append(gen.fire_statistics(z, e)[1][:, :, :, 7].sum(dim=(1, 2)))
            prior[0, :, :, :, 7] -= sign * h
    fd = (expected[0] - expected[1]) / (2.0 * h)
    assert float(fd.min()) > 1.0                           # the layer answers a shift
    np.testing.assert_allclose(density[:, 7].numpy(), fd.numpy(), rtol=1e-5)


def test_regressions_recover_the_cross_layer_slopes() -> None:
    """``n_l = 20 + b_l x_l + c_l x_(l+1) + noise`` with correlated excesses (neighbouring
    layers share a shower's development): the own slopes ``b`` and the cross slopes ``c`` are
    recovered, the other cross slopes are 0."""
    rng = np.random.default_rng(7)
    n_ev, layers = 20000, 5
    common = rng.normal(size=(n_ev, 1))
    x = 0.6 * common + 0.8 * rng.normal(size=(n_ev, layers))
    b = np.array([2.0, 1.0, 3.0, 0.5, 1.5])
    c = np.array([-3.0, 0.0, 2.0, 4.0, 0.0])
    nxt = np.roll(x, -1, axis=1)
    nxt[:, -1] = 0.0
    ell = rng.uniform(-1.0, 1.0, n_ev)
    counts = 20.0 + b * x + c * nxt + rng.normal(size=(n_ev, layers))
    hits = LayerHits()
    hits.add_counts(np.ones((n_ev, 1)), counts, x, ell)
    fit = hits.regressions()
    np.testing.assert_allclose(fit.slope[0], b, atol=0.05)
    want = np.zeros((layers, layers))
    want[np.arange(layers - 1), np.arange(1, layers)] = c[:-1]
    np.testing.assert_allclose(fit.cross[0], want, atol=0.05)
