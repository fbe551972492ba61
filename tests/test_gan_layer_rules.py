"""Hit counts and widths per layer from the library entry (``caloforge.gan.layer_rules``): the
count rule fires the n largest logits of a layer (checked against a sort), the width contrast
gives a layer a requested radial width and its energy (checked against widths computed here
with NumPy), the library keeps each MC event's own hits and widths, and a generator whose
library has them draws showers that keep them, through safetensors and ONNX."""

from __future__ import annotations

import h5py
import numpy as np
import torch

from caloforge.gan.layer_rules import count_rule, layer_major, radial_width2, width_contrast
from caloforge.gan.layers import build_library
from caloforge.gan.phase import PhaseGenerator

THR = 1e-6


def _width2_numpy(x: np.ndarray) -> np.ndarray:
    """(N, Z) var_x + var_y of each layer of ``x`` (N, X, Y, Z), energy-weighted, by NumPy."""
    n, nx, ny, nz = x.shape
    out = np.zeros((n, nz))
    ix, iy = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    for i in range(n):
        for layer in range(nz):
            w = x[i, :, :, layer].astype(np.float64)
            if w.sum() <= 0:
                continue
            mx, my = np.average(ix, weights=w), np.average(iy, weights=w)
            out[i, layer] = np.average((ix - mx) ** 2 + (iy - my) ** 2, weights=w)
    return out


def test_count_rule_fires_the_n_largest_logits_of_each_layer() -> None:
    g = torch.Generator().manual_seed(1)
    logit = torch.randn(4, 25, 25, 25, generator=g) * 2.0 - 1.0
    hits = torch.randint(0, 626, (4, 25), generator=g).float()
    hits[0, :3] = torch.tensor([0.0, 1.0, 625.0])
    fired = (count_rule(logit, hits) > 0).reshape(4, 625, 25).numpy()
    order = np.argsort(-logit.reshape(4, 625, 25).numpy(), axis=1)
    n = hits.numpy().astype(int)
    exact = 0
    for i in range(4):
        for layer in range(25):
            top = set(order[i, :n[i, layer], layer].tolist())
            got = set(np.flatnonzero(fired[i, :, layer]).tolist())
            assert got <= top                       # never a cell outside the n largest
            exact += got == top
    assert exact >= 0.99 * 100                      # exact unless two logits nearly tie
    assert not fired[0, :, 0].any() and fired[0, :, 1].sum() == 1 and fired[0, :, 2].all()
    # tied at the n-th place: none of the tied cells fires (never more than n)
    tied = torch.full((1, 25, 25, 1), -5.0)
    tied[0, 3, 4, 0] = tied[0, 7, 7, 0] = 2.0
    assert int((count_rule(tied, torch.ones(1, 1)) > 0).sum()) == 0


def test_layer_major_rows_and_count_rule_on_a_non_cubic_grid() -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 5, 7, 4, generator=g)
    rows = layer_major(x)
    assert rows.shape == (12, 35)
    for b in range(3):
        for z in range(4):  # row b Z + z is layer z of shower b, cells in (x, y) order
            assert torch.equal(rows[b * 4 + z], x[b, :, :, z].reshape(-1))
    hits = torch.randint(0, 36, (3, 4), generator=g).float()
    fired = count_rule(x, hits) > 0
    for b in range(3):
        for z in range(4):
            n = int(hits[b, z])
            top = set(torch.argsort(-x[b, :, :, z].reshape(-1))[:n].tolist())
            assert set(torch.nonzero(fired[b, :, :, z].reshape(-1))[:, 0].tolist()) == top


def _pattern(seed: int) -> torch.Tensor:
    """(3, 25, 25, 25) GeV: ~60 fired cells per layer around a centre, log-normal energies."""
    g = torch.Generator().manual_seed(seed)
    ix = torch.arange(25.0)
    r2 = (ix[:, None] - 12.0) ** 2 + (ix[None, :] - 11.0) ** 2
    fired = torch.rand(3, 25, 25, 25, generator=g) < torch.exp(-r2 / 40.0)[None, :, :, None]
    e = 1e-3 * torch.exp(torch.randn(3, 25, 25, 25, generator=g) - r2[None, :, :, None] / 30.0)
    return torch.where(fired, e + 1e-5, torch.zeros_like(e)).double()


def test_width_contrast_gives_the_requested_width_and_energy() -> None:
    x0 = _pattern(2)
    # targets: the widths of the same cells raised to a known power, computed by NumPy
    g = torch.Generator().manual_seed(3)
    power = 0.6 + torch.rand(3, 1, 1, 25, generator=g, dtype=x0.dtype)
    want = _width2_numpy(torch.where(x0 > 0, x0 ** power, 0.0).numpy())
    energy = torch.rand(3, 25, dtype=x0.dtype) + 0.5
    y = width_contrast(x0, torch.from_numpy(want), energy, 1e-12)
    got = _width2_numpy(y.numpy())
    used = want > 0.5
    assert used.sum() > 60
    assert np.abs(np.log(got[used] / want[used])).max() < 1e-3
    assert np.allclose(y.sum(dim=(1, 2)).numpy(), energy.numpy(), rtol=1e-9)
    assert torch.equal(y > 0, x0 > 0)               # the same cells fire
    assert np.allclose(radial_width2(y).numpy(), got, rtol=1e-9, atol=1e-12)


def test_library_keeps_each_mc_events_hits_and_width(mc_file) -> None:
    lib = build_library(mc_file, THR, knots=2, entries=64)
    with h5py.File(mc_file, "r") as f:
        img = np.asarray(f["ECAL"][:], dtype=np.float32)
        e = np.asarray(f["energy"][:]).reshape(-1)
    img = np.where(img >= THR, img, 0.0)
    low = np.flatnonzero(np.isclose(e, e.min()))     # the events of the lower knot, in order
    n = int(lib["counts"][0])
    assert n == len(low)
    assert np.array_equal(lib["hits"][0, :n], np.count_nonzero(img[low], axis=(1, 2)))
    assert np.allclose(lib["width2"][0, :n], _width2_numpy(img[low]), rtol=1e-5, atol=1e-6)


def _ruled_generator(mc_file) -> PhaseGenerator:
    torch.manual_seed(5)
    gen = PhaseGenerator(layer_library=(2, 64), sparse=True, layer_occupancy=True,
                         library_stats=True)
    assert gen.layers is not None and gen.layers.stats
    gen.layers.fill_library(build_library(mc_file, THR, knots=2, entries=64))
    with torch.no_grad():  # a shower-like image: hits and energy fall off with the radius
        g = torch.Generator().manual_seed(6)
        ix = torch.arange(25.0) - 12.0
        r2 = (ix[:, None, None] ** 2 + ix[None, :, None] ** 2).expand(25, 25, 25).reshape(-1)
        shape = gen.prior_sparse[0].shape
        gen.prior_sparse[0].copy_(2.0 - r2 / 15.0 + torch.randn(shape, generator=g))
        gen.prior_sparse[1].copy_(8.0 - r2 / 20.0 + torch.randn(shape, generator=g))
    return gen.eval()


def test_a_drawn_shower_keeps_its_entrys_hits_and_width_and_round_trips(mc_file,
                                                                         tmp_path) -> None:
    import onnxruntime as ort

    from caloforge.gan.checkpoint import load_generator, save_generator
    from caloforge.gan.export import export_onnx

    gen = _ruled_generator(mc_file)
    z = torch.randn(24, gen.latent_dim, generator=torch.Generator().manual_seed(7))
    e = torch.tensor([10.0, 50.0, 100.0]).repeat(8)
    with torch.no_grad():
        x = gen(z, e)
        layer_gev, hits, width2 = gen.layers.draw(z[:, -2:], e)
    x = torch.where(x >= THR, x, torch.zeros_like(x))
    assert hits is not None and width2 is not None
    n = (x > 0).sum(dim=(1, 2)).float()
    assert float((n == hits).float().mean()) >= 0.99 and bool((n <= hits).all())
    assert torch.allclose(x.sum(dim=(1, 2)), layer_gev, rtol=0.01, atol=1e-5)
    got = _width2_numpy(x.numpy())
    dev = np.abs(np.log(got + 1e-2) - np.log(width2.numpy() + 1e-2))[hits.numpy() >= 5]
    assert np.median(dev) < 0.01
    p = save_generator(gen, tmp_path / "g.safetensors")
    again = load_generator(p)
    assert again.layers is not None and again.layers.stats
    with torch.no_grad():
        assert torch.equal(again(z, e), gen(z, e))
    sess = ort.InferenceSession(str(export_onnx(gen, tmp_path / "g.onnx")),
                                providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    out = sess.run(None, {names[0]: z.numpy(), names[1]: e.numpy()})[0]
    with torch.no_grad():
        ref = gen(z, e).numpy()
    assert np.mean((out >= THR) == (ref >= THR)) > 0.9999
    assert np.abs(out - ref).max() <= 1e-3 * float(ref.max())


def test_drawn_hits_follow_the_energy_between_the_knots() -> None:
    """Hits ``c E_k^g`` at every knot (a power law, exact): a shower drawn at any energy gets
    ``c E^g`` to within a rounding, whichever neighbouring knot it takes its entry from."""
    import math

    from caloforge.gan.layers import LayerEnergySampler

    K, M, Z = 16, 4, 25
    knots = torch.linspace(math.log(2.0), math.log(500.0), K)
    c = torch.linspace(1.0, 3.0, Z)                  # at most 3 x 500^0.8 = 432 hits
    g = torch.linspace(0.2, 0.8, Z)
    hits = (c[None, :] * torch.exp(knots)[:, None] ** g[None, :] - 1.0).round()   # (K, Z)
    s = LayerEnergySampler(K, M, Z, stats=True)
    s.fill(torch.full((K, M, Z), 1e-3), torch.full((K,), float(M)), knots,
           hits[:, None, :].expand(K, M, Z).clone(), torch.ones(K, M, Z))
    e = torch.exp(torch.empty(4000).uniform_(math.log(2.5), math.log(450.0),
                                             generator=torch.Generator().manual_seed(1)))
    _, got, _ = s.draw(torch.randn(4000, 2, generator=torch.Generator().manual_seed(2)), e)
    want = c[None, :] * e[:, None] ** g[None, :] - 1.0
    assert got is not None and float(hits.max()) <= 625
    assert float((got - want).abs().max()) <= 1.5    # the rounding of the table and of the draw
    plain = hits[torch.clamp(((torch.log(e) - knots[0]) / (knots[1] - knots[0])).round(), 0,
                             K - 1).long()]
    assert float((plain - want).abs().max()) > 5.0  # the knot's own hits alone are further off


def test_calibration_refuses_a_generator_whose_library_keeps_hits(mc_file) -> None:
    import pytest

    from caloforge.errors import UserError
    from caloforge.gan.calibrate import calibrate_prior

    with pytest.raises(UserError, match="keeps hits and widths"):
        calibrate_prior(_ruled_generator(mc_file), mc_file, passes=1, match="hits")
