"""``caloforge.gan.calibrate.calibrate_prior``: after calibration against an MC file a sparse
phase generator reproduces that file's mean hits and mean energy per layer (the marginals the
calibration matches), measured on fresh noise; a generator without a sparse head is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from caloforge.errors import UserError
from caloforge.gan.calibrate import calibrate_prior
from caloforge.gan.phase import PhaseGenerator


@pytest.fixture(scope="module")
def mc_50gev(tmp_path_factory):
    from caloforge.mc import simulate_to_file

    path = tmp_path_factory.mktemp("cal") / "mc50.h5"
    simulate_to_file(path, 400, energies=np.full(400, 50.0), seed=31, chunk_size=200,
                     progress=False)
    return path


def _per_layer(x: np.ndarray, thr: float) -> tuple[np.ndarray, np.ndarray]:
    x = np.where(x >= thr, x, 0.0)
    return (x > 0).sum(axis=(1, 2)).mean(axis=0), x.sum(axis=(1, 2)).mean(axis=0)


def test_calibrated_generator_matches_the_mc_mean_hits_and_energy_per_layer(mc_50gev) -> None:
    from caloforge.data import read_showers

    images, energies = read_showers(mc_50gev)
    torch.manual_seed(3)
    gen = PhaseGenerator(sparse=True).eval()       # prior 0: every cell fires half the time
    thr = float(gen.cell_threshold_gev)
    hits_mc, energy_mc = _per_layer(images, thr)
    z = torch.randn(400, gen.latent_dim, generator=torch.Generator().manual_seed(99))
    e = torch.from_numpy(energies).float()
    with torch.no_grad():
        before = _per_layer(gen(z, e).numpy(), thr)
    offsets = calibrate_prior(gen, mc_50gev, passes=4)
    with torch.no_grad():
        hits, energy = _per_layer(gen(z, e).numpy(), thr)   # other noise than the calibration's
    main = energy_mc > 0.05 * energy_mc.max()               # layers with 5% of the peak or more
    assert offsets[-1] < offsets[0]
    assert np.abs(before[0] - hits_mc).sum() > 10 * np.abs(hits - hits_mc).sum()
    np.testing.assert_allclose(hits[main], hits_mc[main], rtol=0.1)
    np.testing.assert_allclose(energy[main], energy_mc[main], rtol=0.15)
    assert abs(hits.sum() / hits_mc.sum() - 1) < 0.05


def test_calibrating_a_one_channel_generator_is_refused(mc_50gev) -> None:
    with pytest.raises(UserError, match="no sparse head"):
        calibrate_prior(PhaseGenerator(), mc_50gev, passes=1)


def test_calibrating_a_3dgan_or_against_another_grid_is_one_line(mc_50gev, tmp_path) -> None:
    from caloforge.data import write_showers
    from caloforge.gan.model import Generator

    with pytest.raises(UserError, match="no sparse head"):
        calibrate_prior(Generator(), mc_50gev, passes=1)
    small = tmp_path / "small.h5"
    write_showers(small, np.ones((4, 5, 5, 5), np.float32), np.full(4, 50.0))
    with pytest.raises(UserError, match="grid"):
        calibrate_prior(PhaseGenerator(sparse=True), small, passes=1)


def _log_skew(x: np.ndarray, thr: float) -> float:
    """Skewness of ln E of the hit cells of the ring next to the shower core (r in [1.5, 2.5)
    cells) of layers 6-14, from the per-layer mean (a direct computation, no pooling)."""
    ix = np.arange(x.shape[1]) - (x.shape[1] - 1) / 2
    r = np.hypot(ix[:, None], ix[None, :])
    ring = (r >= 1.5) & (r < 2.5)   # ~230 hits per cell in 400 showers: all get a skew step
    vals = []
    for layer in range(6, 15):
        v = x[:, ring, layer].ravel()
        v = np.log(v[v >= thr])
        vals.append(v - v.mean())
    d = np.concatenate(vals)
    return float((d ** 3).mean() / (d ** 2).mean() ** 1.5)


def test_shape_calibration_gives_cells_the_mc_skewness_of_ln_e(mc_50gev) -> None:
    """The MC's ln E when hit is skewed to low values outside the core; a Gaussian energy noise
    is not. After ``match="shape"`` the generated cells have the MC's skewness (and mean log
    energy) on fresh noise, while ``match="both"`` leaves the noise Gaussian."""
    from caloforge.data import read_showers

    images, energies = read_showers(mc_50gev)
    e = torch.from_numpy(energies).float()
    z = torch.randn(400, PhaseGenerator(sparse=True).latent_dim,
                    generator=torch.Generator().manual_seed(7))
    out = {}
    for match in ("both", "shape"):
        torch.manual_seed(3)
        gen = PhaseGenerator(sparse=True).eval()
        calibrate_prior(gen, mc_50gev, passes=5, match=match)
        with torch.no_grad():
            out[match] = gen(z, e).numpy()
        if match == "both":
            assert float(gen.noise_skew.abs().max()) == 0.0
        else:  # skewed to low energies only: k > 0 would give the noise a k n^2 upper tail
            assert float(gen.noise_skew.max()) <= 0.0 < -float(gen.noise_skew.min())
    thr = 1e-6
    sk_mc = _log_skew(images, thr)
    assert sk_mc < -0.5                                     # the MC's cells: skewed low
    assert abs(_log_skew(out["both"], thr) - sk_mc) > 0.4   # Gaussian noise misses it
    assert abs(_log_skew(out["shape"], thr) - sk_mc) < 0.25


def test_an_unknown_calibration_mode_is_one_line(mc_50gev) -> None:
    with pytest.raises(UserError, match="choose mean, log, both, shape"):
        calibrate_prior(PhaseGenerator(sparse=True), mc_50gev, passes=1, match="median")


def test_shape_caps_the_noise_strength_at_1_5x_the_mc_spread_of_ln_e(mc_50gev) -> None:
    """A far too strong energy noise (|s| = 10, both signs) with every cell firing: one pass of
    ``match="shape"`` leaves no cell with >= 30 MC hits above 1.5x the MC's spread of its ln E
    (here the spread over all its hits, an upper bound of the per-knot spread the calibration
    pools), keeps the signs, and leaves cells with fewer hits alone; ``match="both"`` has no cap
    (the ratio step alone stops at 2/3 of 10)."""
    from caloforge.data import read_showers

    images, _ = read_showers(mc_50gev)
    sign = torch.where(torch.rand(15625, generator=torch.Generator().manual_seed(1)) < 0.5,
                       -1.0, 1.0).reshape(1, 25, 25, 25)
    got = {}
    for match in ("shape", "both"):
        torch.manual_seed(2)
        gen = PhaseGenerator(sparse=True).eval()
        thr = float(gen.cell_threshold_gev)
        with torch.no_grad():
            gen.prior_sparse[0].fill_(3.0)      # p_hit = Phi(3): every cell fires ~always
            gen.noise_val.copy_(10.0 * sign)
        calibrate_prior(gen, mc_50gev, passes=1, match=match)
        got[match] = gen.noise_val.detach().reshape(-1).numpy()
    flat = images.reshape(len(images), -1).astype(np.float64)
    hit = flat >= thr
    many = hit.sum(axis=0) >= 30
    logs = np.where(hit, np.log(np.where(hit, flat, 1.0)), np.nan)
    spread = np.nanstd(logs[:, many], axis=0)
    s = got["shape"]
    assert many.sum() > 100 and (~many).sum() > 100
    assert np.all(np.abs(s[many]) <= 1.5 * spread * (1 + 1e-5))
    assert float(np.abs(s[many]).max()) < 6.0 < 6.6 < float(np.abs(got["both"][many]).min())
    assert np.array_equal(np.sign(s), sign.reshape(-1).numpy())
    assert np.array_equal(np.abs(s[~many]), np.full((~many).sum(), 10.0, np.float32))


def test_pooled_skewness_of_ln_e_is_the_hits_weighted_central_moments_per_knot() -> None:
    """``_Marginals.log_skew`` (raw power sums) against central moments taken directly: per
    knot the hat-weighted mean of ln E over the hit events, then sum_k sum_i w_ik (x_i - mu_k)^3
    over sum w, divided by the pooled variance to the 3/2; unhit cells (0) do not count."""
    from caloforge.gan.calibrate import _Marginals

    rng = np.random.default_rng(5)
    n, cells = 3000, 4
    t = rng.random(n)
    hat = np.stack([1.0 - t, t], axis=1)                          # two knots, weights sum to 1
    logs = -6.0 + rng.gamma(2.0, 1.0, (n, cells)) * np.array([-1.0, 1.0, -0.5, 0.3]) \
        + 2.0 * t[:, None]                                       # skewed both ways, knot-shifted
    img = np.exp(logs) * (rng.random((n, cells)) < 0.7)          # 30% unhit
    m = _Marginals(2, cells)
    m.add(hat[:1000], img[:1000])
    m.add(hat[1000:], img[1000:])                                 # two chunks, as in the file loop
    want = np.empty(cells)
    for c in range(cells):
        hit = img[:, c] > 0
        x, w = logs[hit, c], hat[hit]
        mu = (w * x[:, None]).sum(axis=0) / w.sum(axis=0)
        d = x[:, None] - mu
        want[c] = (w * d ** 3).sum() / w.sum() / ((w * d ** 2).sum() / w.sum()) ** 1.5
    assert want[0] < -0.5 and want[1] > 0.5                        # the fixture is skewed
    np.testing.assert_allclose(m.log_skew(), want, rtol=1e-9)
