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
