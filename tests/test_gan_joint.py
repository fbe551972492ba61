"""The joint hits/size loss (``--joint-weight``): statistics counted by hand, the loss against
the closed form of Gaussian covariances, trends in ln E that must not count, and a training
step that carries it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from caloforge.gan.joint import joint_moment_loss, joint_statistics


def test_statistics_count_fired_and_hard_cells_and_the_size_by_hand() -> None:
    x = torch.zeros(1, 25, 25, 25)
    x[0, 12, 12, 3] = 1e-5          # fired, soft, on the axis
    x[0, 15, 12, 5] = 1e-3          # hard, r^2 = 9
    x[0, 12, 16, 7] = 5e-4          # hard, r^2 = 16
    occ = (x > 0).float()
    j = joint_statistics(x, occ)[0]
    size = (1e-3 * 9 + 5e-4 * 16) / (1e-5 + 1e-3 + 5e-4)
    torch.testing.assert_close(j, torch.tensor([math.log(4), math.log(3), math.log(size + 1e-3)]),
                               rtol=1e-5, atol=1e-6)


def test_hard_hits_carry_a_gradient_to_the_cell_energies() -> None:
    x = torch.full((2, 25, 25, 25), 0.0)
    x[:, 10, 10, 10] = 3e-4                               # at the hard threshold
    x.requires_grad_(True)
    j = joint_statistics(x, (x > 0).float())
    j[:, 1].sum().backward()
    assert x.grad is not None and float(x.grad[0, 10, 10, 10]) > 0


def _gaussian(n: int, corr: float, seed: int, trend: float, offset: float = 0.0,
              energies: np.ndarray | None = None):
    """Statistics (n, 3) at ``energies`` (default: uniform 2-500 GeV): unit-variance residuals,
    the first two with correlation ``corr``, the third independent and shifted by ``offset``,
    on a trend ``trend x (ln E)^2``."""
    rng = np.random.default_rng(seed)
    e = rng.uniform(2.0, 500.0, n) if energies is None else energies
    a, b, c = rng.standard_normal((3, n))
    res = np.stack([a, corr * a + math.sqrt(1 - corr ** 2) * b, c + offset], axis=1)
    le = np.log(e)[:, None]
    stats = res + trend * le * le + np.array([1.0, -2.0, 0.5]) * le
    return torch.tensor(stats, dtype=torch.float64), torch.tensor(e, dtype=torch.float64)


def test_loss_vanishes_for_the_same_joint_distribution_even_under_a_strong_energy_trend() -> None:
    real, e = _gaussian(20_000, 0.5, seed=1, trend=1.0)
    # the fakes share the reals' energies in training
    fake, _ = _gaussian(20_000, 0.5, seed=2, trend=1.0, energies=e.numpy())
    cov, mean = joint_moment_loss(fake, real, e)
    # sampling noise of a covariance entry ~ sqrt(2 / n) = 0.01
    assert float(cov) < 0.02 and float(mean) < 0.02


def test_loss_measures_a_wrong_correlation_and_a_shifted_mean_in_units_of_the_spread() -> None:
    real, e = _gaussian(20_000, 0.2, seed=3, trend=1.0)
    # same energies, correlation 0.8 instead of 0.2, third statistic shifted by 0.5 sd
    fake, _ = _gaussian(20_000, 0.8, seed=4, trend=1.0, offset=0.5, energies=e.numpy())
    cov, mean = joint_moment_loss(fake, real, e)
    # two of the nine entries differ by 0.6 (the off-diagonal pair); the rest by noise only
    assert float(cov) == pytest.approx(2 * 0.6 / 9, abs=0.015)
    # one of three statistics is off by 0.5 sd
    assert float(mean) == pytest.approx(0.5 / 3, abs=0.015)


def test_a_phase_training_step_with_the_joint_loss_logs_it_and_moves_the_generator(tmp_path) -> None:
    from caloforge.gan.checkpoint import load_generator
    from caloforge.gan.train import TrainConfig, train
    from caloforge.mc import simulate_to_file

    data = tmp_path / "train.h5"
    e = np.random.default_rng(31).uniform(2.0, 500.0, 64)
    simulate_to_file(data, 64, energies=e, seed=31, chunk_size=64, progress=False)
    common = dict(data=str(data), architecture="phase", epochs=1, batch_size=32,
                  optimizer="adam", lr=1e-4, lr_d=1e-4, betas=(0.5, 0.9), aux_weight=10.0,
                  aux_groups=2, adv_weight=0.3, progress=False, seed=5, threads=2)
    with_joint = train(TrainConfig(output=str(tmp_path / "joint"), joint_weight=3.0, **common))
    assert "g_joint" in with_joint.history[-1] and with_joint.history[-1]["g_joint"] > 0
    without = train(TrainConfig(output=str(tmp_path / "plain"), **common))
    assert "g_joint" not in without.history[-1]
    a = load_generator(with_joint.output / "generators" / "epoch-0001.safetensors")
    b = load_generator(without.output / "generators" / "epoch-0001.safetensors")
    # same seed, same data: only the joint loss differs, and it changes the trained weights
    assert not torch.equal(a.up2.weight, b.up2.weight)


def test_the_trend_of_a_batch_at_one_energy_is_its_mean_not_a_blow_up() -> None:
    from caloforge.gan.joint import energy_trend

    real = torch.tensor([[1.0, 2.0], [3.0, 6.0], [5.0, 10.0]], dtype=torch.float32)
    trend = energy_trend(real, torch.full((3,), 100.0))
    torch.testing.assert_close(trend, real.mean(dim=0).expand(3, 2), rtol=1e-5, atol=1e-5)
    # a narrow band in float32 (100-105 GeV) still fits a straight line exactly
    e = torch.linspace(100.0, 105.0, 64)
    line = torch.stack([2.0 + 0.5 * torch.log(e), -torch.log(e)], dim=1)
    torch.testing.assert_close(energy_trend(line, e), line, rtol=1e-5, atol=1e-5)
