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


def test_skewed_noise_is_the_stated_polynomial_pointwise() -> None:
    """The factored form ``n (a + b n) - b`` against the docstring's formula in NumPy float64."""
    g = torch.Generator().manual_seed(4)
    n, s = torch.randn(2000, generator=g), torch.rand(2000, generator=g) * 2.0 - 1.0
    k = -0.7 * torch.rand(2000, generator=g)
    nn, ss, kk = (t.double().numpy() for t in (n, s, k))
    want = ss * (nn + kk * (nn ** 2 - 1.0)) / np.sqrt(1.0 + 2.0 * kk ** 2)
    np.testing.assert_allclose(skewed_noise(n, s, k).double().numpy(), want, rtol=0, atol=1e-5)


def _sparse_generator(seed: int):
    from caloforge.gan.phase import PhaseGenerator

    torch.manual_seed(seed)
    gen = PhaseGenerator(sparse=True)
    r = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        gen.prior_sparse.copy_(torch.randn(gen.prior_sparse.shape, generator=r) - 0.5)
        gen.noise_val.copy_(torch.rand(gen.noise_val.shape, generator=r) + 0.5)
        gen.up2.weight.mul_(30.0)  # a network output that matters next to the prior
    return gen.eval()


def test_zero_skew_generator_computes_the_pre_skew_gaussian_noise_bitwise(monkeypatch) -> None:
    """k = 0 in the whole generator: the same showers as the former ``strength x n`` noise."""
    import caloforge.gan.phase as phase

    gen = _sparse_generator(5)
    z = torch.randn(3, gen.latent_dim, generator=torch.Generator().manual_seed(6))
    e = torch.tensor([5.0, 50.0, 400.0])
    with torch.no_grad():
        new = gen(z, e)
        monkeypatch.setattr(phase, "skewed_noise", lambda n, s, k: s * n)
        old = gen(z, e)
    assert (new > 0).any() and torch.equal(new, old)


def test_init_generator_from_a_sparse_run_before_the_skew_starts_gaussian() -> None:
    """``train --init-generator`` of a sparse run whose files lack ``noise_skew``."""
    from caloforge.gan.phase import PhaseGenerator
    from caloforge.gan.steps import _load_init

    src = _sparse_generator(7)
    state = {k: v.clone() for k, v in src.state_dict().items() if k != "noise_skew"}
    torch.manual_seed(8)
    fresh = PhaseGenerator(sparse=True).eval()
    _load_init(fresh, state)
    assert float(fresh.noise_skew.abs().max()) == 0.0
    z = torch.randn(2, src.latent_dim, generator=torch.Generator().manual_seed(9))
    e = torch.tensor([20.0, 200.0])
    with torch.no_grad():
        assert torch.equal(fresh(z, e), src(z, e))


def test_a_skewed_generator_exports_to_onnx_equal_to_torch(tmp_path) -> None:
    """ONNX Runtime on the exported graph of a model with k in the calibration's [-0.7, 0] gives
    PyTorch's showers (and the export path's parity number is small), and the skew matters."""
    import onnxruntime as ort

    from caloforge.gan.export import export_onnx
    from caloforge.gan.ship import _onnx_parity

    gen = _sparse_generator(10)
    with torch.no_grad():
        gen.noise_skew.copy_(-0.7 * torch.rand(gen.noise_skew.shape,
                                               generator=torch.Generator().manual_seed(11)))
    path = export_onnx(gen, tmp_path / "skew.onnx")
    z = torch.randn(4, gen.latent_dim, generator=torch.Generator().manual_seed(12))
    e = torch.tensor([3.0, 30.0, 150.0, 450.0])
    with torch.no_grad():
        ref = gen(z, e).numpy()
        # the same model with k = 0: the skew changed the cells
        gen.noise_skew.zero_()
        flat = gen(z, e).numpy()
        gen.noise_skew.copy_(-0.7 * torch.rand(gen.noise_skew.shape,
                                               generator=torch.Generator().manual_seed(11)))
    fired = ref > 0
    assert fired.sum() > 1000 and np.abs(flat - ref)[fired].max() > 0.1 * ref[fired].max()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"z": z.numpy(), "energy": e.numpy()})[0]
    assert np.array_equal(got > 0, fired)
    assert float((np.abs(got - ref)[fired] / ref[fired]).max()) < 1e-4
    parity = _onnx_parity(gen, path)
    assert parity is not None and parity < 1e-5
