"""The layer-occupancy coupling of the sparse phase generator (``PhaseGenerator(layer_occupancy=
True)``, ``caloforge.gan.phase_stats.layer_occupancy_coefficients``): a layer that gets more
energy than the library's mean fires more cells, by the probit law the coefficients set; the
coefficients estimated from synthetic events whose hits follow that law come back; the library's
mean log layer energy equals a direct computation; the model round-trips through safetensors
and ONNX."""

from __future__ import annotations

import math

import numpy as np
import torch

from caloforge.gan.layers import LayerEnergySampler
from caloforge.gan.phase import GLOBAL_LATENT, PRIOR_KNOTS, PhaseGenerator
from caloforge.gan.phase_stats import layer_occupancy_coefficients

THR = 1e-6
FRACTION = 0.04   # every library entry: 4% of the primary energy in every layer


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def test_log_mean_is_the_mean_over_filled_entries_interpolated_in_ln_e() -> None:
    g = torch.Generator().manual_seed(0)
    s = LayerEnergySampler(knots=3, entries=4, layers=5)
    table = torch.rand(3, 4, 5, generator=g) * 0.1
    counts = torch.tensor([4.0, 2.0, 3.0])
    knots = torch.log(torch.tensor([10.0, 20.0, 40.0]))
    s.fill(table, counts, knots)
    direct = np.array([np.log(table[k, :int(counts[k])].numpy() * float(torch.exp(knots[k]))
                              + THR).mean(axis=0) for k in range(3)])
    got = s.log_mean(torch.tensor([10.0, 20.0, 40.0, math.sqrt(200.0), 5.0, 80.0]), THR).numpy()
    np.testing.assert_allclose(got[:3], direct, rtol=1e-5)
    np.testing.assert_allclose(got[3], 0.5 * (direct[0] + direct[1]), rtol=1e-5)  # mid ln E
    np.testing.assert_allclose(got[4], direct[0], rtol=1e-5)    # clamped below the first knot
    np.testing.assert_allclose(got[5], direct[2], rtol=1e-5)    # and above the last


def _library(knots: int = 8, entries: int = 16) -> dict[str, np.ndarray]:
    return {"table": np.full((knots, entries, 25), FRACTION, dtype=np.float32),
            "counts": np.full(knots, float(entries), dtype=np.float32),
            "knots": np.linspace(math.log(2.0), math.log(500.0), knots).astype(np.float32)}


def test_coefficients_of_synthetic_probit_hits_come_back() -> None:
    rng = np.random.default_rng(1)
    n, a, g_true = 6000, 0.5, 0.15
    e = np.full(n, 100.0)
    mu = -1.0 + 0.1 * np.arange(25)                    # probit prior: one value per layer (Z)
    r = rng.normal(0.0, 0.2, size=(n, 25))              # ln excess of each layer's energy
    xi = rng.normal(size=(n, 1))                        # shared by all layers of an event
    p = 0.5 * (1.0 + np.vectorize(math.erf)((mu + a * r + g_true * xi) / math.sqrt(2.0)))
    hits = rng.binomial(625, p)                         # 625 cells of a layer, probit mu_l
    knots = np.linspace(np.log(0.02), np.log(5.0), PRIOR_KNOTS).astype(np.float32)
    prior = np.zeros((2, PRIOR_KNOTS, 15625), dtype=np.float32)
    prior[0] = np.broadcast_to(mu, (25, 25, 25)).reshape(-1)    # cells in (X, Y, Z) order
    stats = {"event_energy": e, "event_layer_gev": (FRACTION * e[:, None] + THR) * np.exp(r) - THR,
             "event_layer_hits": hits, "prior_knots": knots, "prior_sparse": prior}
    occ, shared = layer_occupancy_coefficients(stats, _library())
    assert occ.shape == shared.shape == (PRIOR_KNOTS, 25)
    # first order in a r: dN/dr = 625 phi(mu_l) a (the curvature is <= 2% at these sizes);
    # every bin has no events of its own but the one at ln(100/100) = 0: all copy it
    np.testing.assert_allclose(occ, a, rtol=0.08)
    np.testing.assert_allclose(shared, g_true, rtol=0.15)


def _coupled_generator(occ: float, shared: float) -> PhaseGenerator:
    torch.manual_seed(2)
    gen = PhaseGenerator(layer_library=(8, 16), sparse=True, layer_occupancy=True)
    lib = _library()
    gen.layers.fill(*(torch.as_tensor(lib[k]) for k in ("table", "counts", "knots")))
    with torch.no_grad():
        gen.up2.weight.zero_()
        gen.up2.bias.zero_()
        prior = gen.prior_sparse.clone()
        prior[0] = 0.0          # every cell: probit 0, fires half the time without coupling
        prior[1] = 5.0
        gen.set_prior(gen.prior, gen.prior_knots, prior, torch.full((PRIOR_KNOTS, 25), occ),
                      torch.full((PRIOR_KNOTS, 25), shared))
    return gen.eval()


def test_a_layer_with_more_energy_fires_more_cells_by_the_probit_law() -> None:
    gen = _coupled_generator(occ=0.5, shared=0.3)
    n = 64
    e = torch.full((n,), 100.0)
    excess = torch.zeros(25)
    excess[5], excess[15] = 1.0, -1.0
    target = (FRACTION * 100.0 + THR) * torch.exp(excess).expand(n, 25) - THR
    z = torch.randn(n, gen.latent_dim, generator=torch.Generator().manual_seed(3))
    z[:, GLOBAL_LATENT - 1] = torch.where(torch.arange(n) < n // 2, 1.0, -1.0)
    with torch.no_grad():
        x = gen(z, e, layer_energies=target)
    freq = (x > 0).float().mean(dim=(1, 2))                  # (n, 25) fired fraction per layer
    for half, xi in ((slice(0, n // 2), 1.0), (slice(n // 2, n), -1.0)):
        for layer in (5, 15, 10):
            expected = _phi(0.5 * float(excess[layer]) + 0.3 * xi)
            got = float(freq[half, layer].mean())
            sigma = math.sqrt(expected * (1 - expected) / (625 * n // 2))
            assert abs(got - expected) < 5 * sigma + 0.01, (layer, xi, got, expected)


def test_coupled_generator_round_trips_through_safetensors_and_onnx(tmp_path) -> None:
    import onnxruntime as ort

    from caloforge.gan.checkpoint import load_generator, save_generator
    from caloforge.gan.export import export_onnx

    gen = _coupled_generator(occ=0.7, shared=0.2)
    z = torch.randn(3, gen.latent_dim, generator=torch.Generator().manual_seed(4))
    e = torch.tensor([5.0, 50.0, 400.0])
    with torch.no_grad():
        plain = gen(z, e)
        # the calibration's cell-energy coupling to the layer energy and per-energy strength
        g = torch.Generator().manual_seed(5)
        gen.value_layer.copy_(torch.rand(gen.value_layer.shape, generator=g) * 1.5 - 0.5)
        gen.noise_val_knots.copy_(torch.rand(gen.noise_val_knots.shape, generator=g) + 0.3)
        # and the coupling to the shower's depth (caloforge.gan.depth)
        gen.value_depth.copy_(torch.rand(gen.value_depth.shape, generator=g) * 0.6 - 0.3)
        gen.depth_mean.copy_(torch.rand(gen.depth_mean.shape, generator=g) * 4.0 + 6.0)
    back = load_generator(save_generator(gen, tmp_path / "occ.safetensors"))
    assert back.layer_occupancy
    with torch.no_grad():
        ref = gen(z, e)
        assert not torch.allclose(ref, plain)          # the terms are in the graph
        assert torch.equal(back(z, e), ref)
    sess = ort.InferenceSession(str(export_onnx(gen, tmp_path / "occ.onnx")),
                                providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    out = sess.run(None, {names[0]: z.numpy(), names[1]: e.numpy()})[0]
    close = np.isclose(out, ref.numpy(), rtol=1e-4, atol=1e-9)
    assert close.mean() > 0.9999          # a cell whose logit is ~0 may flip
