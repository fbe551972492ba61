"""``calibrate_prior(match="depth")``: a cell's share that follows the whole shower's depth.

In GFlash the core radius grows with ``tau = t / T`` (Grindhammer-Peters), so at a given layer
a shower whose maximum lies deeper is narrower: the core's width follows the shower's depth.
Checked: the depth against its definition (the layer-energy-weighted mean layer index); the
two-variable fit against slopes planted in synthetic shares; the generator's depth term
against the depth of the showers it makes; files without the new tensors load as before; and
on the project's MC at 150 / 250 GeV, that the calibration gives the model the MC's slope of
the core's share on the depth and the MC's anti-correlation of the core width with the depth.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from caloforge.gan.calibrate import calibrate_prior
from caloforge.gan.depth import DepthShares, layer_depth
from caloforge.gan.phase import PhaseGenerator

N = 600
ENERGIES = np.repeat([150.0, 250.0], N // 2)   # a library needs two energies
THR = 1e-6


def test_depth_is_the_energy_weighted_mean_layer() -> None:
    e = np.array([[0.0, 1.0, 1.0, 0.0], [2.0, 0.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0],
                  [0.0, 0.0, 0.0, 5.0]])
    np.testing.assert_allclose(layer_depth(e), [1.5, 1.5, 0.0, 3.0])


def test_the_fit_recovers_planted_slopes_and_spread() -> None:
    """Layer 0 of a 2x1x2 grid: cell A's share ``ln(E_A / E_l) = -1 + 0.3 x - 0.2 d + 0.1 n``
    with correlated ``x``, ``d`` (as a layer's excess and the depth are); cell B holds the
    rest. All events at the first knot."""
    rng = np.random.default_rng(3)
    n = 20000
    d = rng.normal(0.0, 0.9, n)
    x = 0.6 * d + rng.normal(0.0, 0.5, n)
    y = -1.0 + 0.3 * x - 0.2 * d + 0.1 * rng.normal(size=n)
    images = np.zeros((n, 2, 1, 2))
    images[:, 0, 0, 0] = np.exp(y)
    images[:, 1, 0, 0] = 1.0 - np.exp(y)
    images[:, :, 0, 1] = 0.5                            # layer 1: two equal cells
    excess = np.stack([x, np.zeros(n)], axis=1)
    hat = np.zeros((n, 3))
    hat[:, 0] = 1.0
    s = DepthShares(3, 4)
    s.add(hat, images, excess, d)
    bx, bd, spread, ok = s.fit()
    a = 0                                               # cell A, layer 0 (x-major, layer last)
    np.testing.assert_allclose([bx[0, a], bd[0, a], spread[0, a]], [0.3, -0.2, 0.1], atol=0.01)
    assert s.hits[0, a] == n and s.hits[1:].sum() == 0
    # layer 1's shares never move and its excess is 0 (no fit possible): no slope, no spread;
    # the empty knots give zeros and no fit either
    assert ok[0, a] and not ok[0, 1] and not ok[1:].any()
    assert abs(bx[0, 1]) < 1e-9 and abs(bd[0, 1]) < 1e-9 and spread[0, 1] < 1e-6
    assert not bx[1:].any() and not bd[1:].any()


def test_the_depth_mean_follows_the_trend_in_energy_between_the_knots() -> None:
    """A depth linear in ln E (as a shower maximum is, ``t_max ~ ln(E / E_c)``) is exactly what
    hat interpolation between knots can represent, so the knot values fitted to a log-uniform
    spectrum reproduce it at every energy, also at the ends and between the knots."""
    from caloforge.gan.depth import depth_means

    gen = PhaseGenerator(sparse=True)
    rng = np.random.default_rng(7)
    e = np.exp(rng.uniform(np.log(2.0), np.log(500.0), 5000))
    hat = gen._hat(torch.from_numpy(np.log(e / 100.0)).float().reshape(-1, 1)).double().numpy()
    depth = 9.0 + 1.1 * np.log(e / 100.0)
    m = depth_means(hat, depth + rng.normal(0.0, 0.9, len(e)))
    grid = np.exp(np.linspace(np.log(2.0), np.log(500.0), 40))
    h = gen._hat(torch.from_numpy(np.log(grid / 100.0)).float().reshape(-1, 1)).double().numpy()
    np.testing.assert_allclose(h @ m, 9.0 + 1.1 * np.log(grid / 100.0), atol=0.08)


def _library_generator(seed: int = 2) -> PhaseGenerator:
    torch.manual_seed(seed)
    gen = PhaseGenerator(layer_library=(2, 4), sparse=True, layer_occupancy=True).eval()
    with torch.no_grad():
        gen.layers.table.uniform_(0.0, 0.05)
        gen.prior_sparse[1].fill_(8.0)
    return gen


def test_the_generator_moves_a_cell_by_its_coupling_times_the_showers_depth() -> None:
    """With ``value_depth`` on one cell of a layer, its energy relative to another fired cell
    of that layer moves by ``softplus(v + c d) - softplus(v)`` in ln, ``d`` the depth excess of
    the shower's own layer energies (computed here from the showers); zeros change nothing."""
    gen = _library_generator()
    z = torch.randn(8, gen.latent_dim, generator=torch.Generator().manual_seed(4))
    e = torch.tensor([5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 300.0, 400.0])
    with torch.no_grad():
        base = gen(z, e)
        _, value0, _, _ = gen._sparse_inputs(z, e, None)
        gen.depth_mean.copy_(torch.linspace(5.0, 9.0, gen.depth_mean.numel()))
        assert torch.equal(gen(z, e), base)             # value_depth 0: the mean alone is inert
        cell = 12 * 625 + 12 * 25 + 10                  # the core cell of layer 10
        gen.value_depth[:, cell] = 0.7
        moved = gen(z, e)
        _, value1, _, _ = gen._sparse_inputs(z, e, None)
    hat = gen._hat(torch.log(e / 100.0).reshape(-1, 1)).double().numpy()
    layers = base.sum(dim=(1, 2)).double().numpy()
    d = layer_depth(layers) - hat @ gen.depth_mean.double().numpy()
    v0, v1 = value0.reshape(8, -1)[:, cell].double(), value1.reshape(8, -1)[:, cell].double()
    np.testing.assert_allclose((v1 - v0).numpy(), 0.7 * d, rtol=1e-4, atol=1e-5)
    changed = (moved != base).reshape(8, 25 * 25, 25).any(dim=1)
    assert not changed[:, :10].any() and not changed[:, 11:].any()   # layer 10 alone


def test_files_without_the_depth_tensors_load_with_zeros(tmp_path) -> None:
    from caloforge.gan.checkpoint import load_generator, save_tensors

    gen = _library_generator()
    state = {k: v for k, v in gen.state_dict().items() if k not in ("value_depth", "depth_mean")}
    path = tmp_path / "old.safetensors"
    save_tensors(path, state, {"architecture": "phase", "layer_library": "2,4",
                               "sparse": "1", "layer_occupancy": "1"})
    loaded = load_generator(path).eval()
    assert not loaded.value_depth.any() and not loaded.depth_mean.any()
    z = torch.randn(3, gen.latent_dim)
    e = torch.tensor([10.0, 50.0, 200.0])
    with torch.no_grad():
        assert torch.equal(loaded(z, e), gen(z, e))


@pytest.fixture(scope="module")
def mc_high(tmp_path_factory):
    from caloforge.mc import simulate_to_file

    path = tmp_path_factory.mktemp("caldepth") / "mc.h5"
    simulate_to_file(path, N, energies=ENERGIES, seed=44, chunk_size=300, progress=False)
    return path


def _core_width_vs_depth(images: np.ndarray, energies: np.ndarray) -> tuple[float, float]:
    """(slope of the share of ring 2 (chessboard) in layers 10-14 on the depth excess,
    correlation of the core's (rings < 3) x second moment with the depth excess), both per
    energy about its mean
    -- computed from the showers alone."""
    i = np.arange(25)
    img = np.where(images >= THR, images, 0.0)
    layers = img.sum(axis=(1, 2))
    depth = layer_depth(layers)
    ring = np.maximum(abs(i[:, None] - 12), abs(i[None, :] - 12))
    px = (img * (ring < 3)[None, :, :, None]).sum(axis=(2, 3))
    tot = px.sum(axis=1)
    m1 = px @ i / tot
    m2 = px @ (i * i) / tot - m1 ** 2
    d, w, ys, xs = [], [], [], []
    for en in np.unique(energies):
        s = energies == en
        d.append(depth[s] - depth[s].mean())
        w.append(m2[s] - m2[s].mean())
        share = (img[s][:, ring == 2, 10:15].sum(axis=1)
                 / np.maximum(layers[s][:, 10:15], 1e-30))
        ok = share > 0
        y = np.log(np.where(ok, share, 1.0))
        for k in range(5):
            yk = y[ok[:, k], k]
            ys.append(yk - yk.mean())
            xs.append(d[-1][ok[:, k]])
    x, y = np.concatenate(xs), np.concatenate(ys)
    return float((x @ y) / (x @ x)), float(np.corrcoef(np.concatenate(d), np.concatenate(w))[0, 1])


def test_depth_gives_the_core_the_mcs_dependence_on_the_shower_depth(mc_high,
                                                                    library_generator) -> None:
    from caloforge.data import read_showers

    images, energies = read_showers(mc_high)
    slope_mc, corr_mc = _core_width_vs_depth(images, energies)
    assert slope_mc < -0.05 and corr_mc < -0.3         # GFlash: deeper showers, narrower cores
    gen = library_generator(mc_high, N)
    calibrate_prior(gen, mc_high, passes=3, match="layer")

    def model_stats() -> tuple[float, float]:
        z = torch.randn(N, gen.latent_dim, generator=torch.Generator().manual_seed(9))
        with torch.no_grad():
            x = gen(z, torch.from_numpy(ENERGIES).float()).numpy()
        return _core_width_vs_depth(x, ENERGIES)

    slope0, corr0 = model_stats()
    assert abs(slope0 - slope_mc) > 0.5 * abs(slope_mc)  # the starting point lacks it
    before = {k: v.clone() for k, v in gen.state_dict().items()}
    calibrate_prior(gen, mc_high, passes=3, match="depth")
    slope1, corr1 = model_stats()
    assert gen.value_depth.any() and gen.depth_mean.any()
    for k in ("noise_skew", "occ_layer", "occ_global", "occ_cross", "noise_val"):
        assert torch.equal(gen.state_dict()[k], before[k]), k   # not depth mode's to move
    i = np.arange(25)
    ring = np.rint(np.hypot(i[:, None, None] - 12, i[None, :, None] - 12)) + 0 * i[None, None, :]
    far = torch.from_numpy(ring.reshape(-1) >= 6)
    assert not gen.value_depth[:, far].any()
    for k in ("value_layer", "noise_val_knots"):
        assert torch.equal(gen.state_dict()[k][:, far], before[k][:, far]), k
    assert abs(slope1 - slope_mc) < 0.5 * abs(slope0 - slope_mc), (slope0, slope1, slope_mc)
    assert abs(corr1 - corr_mc) < 0.5 * abs(corr0 - corr_mc), (corr0, corr1, corr_mc)
