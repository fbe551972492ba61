"""The sparse head's skewed energy noise (``caloforge.gan.sparse.skewed_noise``): its first
three moments against Gauss-Hermite quadrature of the polynomial (an independent computation),
the Gaussian case exactly, and generator files from before the skew loading as Gaussian."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.polynomial.hermite_e import hermegauss

from caloforge.gan.sparse import skew_of, skewed_noise


def _quadrature_moments(strength: float, k: float) -> tuple[float, float, float]:
    """Mean, standard deviation and skewness of strength (n + k (n^2 - 1)) / sqrt(1 + 2 k^2)
    by 40-point Gauss-Hermite quadrature (exact for polynomials of this degree)."""
    n, w = hermegauss(40)
    w = w / w.sum()
    y = strength * (n + k * (n ** 2 - 1)) / np.sqrt(1 + 2 * k ** 2)
    mean = float((w * y).sum())
    var = float((w * (y - mean) ** 2).sum())
    third = float((w * (y - mean) ** 3).sum())
    return mean, var ** 0.5, third / var ** 1.5


@pytest.mark.parametrize("k", [-0.6, -0.25, 0.1, 0.4])
def test_skewed_noise_has_zero_mean_its_strength_as_spread_and_the_stated_skewness(k) -> None:
    mean_q, sd_q, skew_q = _quadrature_moments(0.8, k)
    assert abs(mean_q) < 1e-12 and abs(sd_q - 0.8) < 1e-12
    assert float(skew_of(k)) == pytest.approx(skew_q, rel=1e-9)
    n = torch.randn(400_000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = skewed_noise(n, torch.tensor(0.8, dtype=torch.float64),
                     torch.tensor(k, dtype=torch.float64)).numpy()
    d = y - y.mean()
    assert abs(y.mean()) < 0.01 and y.std() == pytest.approx(0.8, rel=0.01)
    assert (d ** 3).mean() / d.std() ** 3 == pytest.approx(skew_q, abs=0.05)


def test_zero_skew_is_the_gaussian_noise_exactly() -> None:
    n = torch.randn(1000, generator=torch.Generator().manual_seed(2))
    s = torch.rand(1000) + 0.5
    assert torch.equal(skewed_noise(n, s, torch.zeros(1000)), s * n)


def test_a_generator_file_without_the_skew_loads_as_gaussian(tmp_path) -> None:
    from safetensors.torch import save_file

    from caloforge.gan.checkpoint import load_generator
    from caloforge.gan.phase import PhaseGenerator

    torch.manual_seed(0)
    gen = PhaseGenerator(sparse=True).eval()
    state = {k: v.contiguous() for k, v in gen.state_dict().items() if k != "noise_skew"}
    path = tmp_path / "old.safetensors"
    save_file(state, str(path))
    loaded = load_generator(path)
    assert float(loaded.noise_skew.abs().max()) == 0.0
    z = torch.randn(2, gen.latent_dim, generator=torch.Generator().manual_seed(3))
    e = torch.tensor([20.0, 200.0])
    with torch.no_grad():
        assert torch.equal(loaded(z, e), gen(z, e))
