"""The layer-energy library of the factorised phase generator (``caloforge.gan.layers``):
rescaling hits the requested layer sums, the sampler draws knots with the ln E interpolation
weights and entries uniformly among the filled ones, a library reproduces the MC's own layer
energies, and a generator with a library round-trips through safetensors and ONNX."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch

from caloforge.gan.layers import LayerEnergySampler, build_library, rescale_layers, sampler_from
from caloforge.gan.phase import PHASE_LATENT_DIM, PhaseGenerator
from caloforge.mc import simulate_to_file

THR = 1e-6


def test_rescaled_layers_sum_to_the_target_within_one_percent() -> None:
    g = torch.Generator().manual_seed(1)
    u = torch.randn(6, 25, 25, 25, generator=g) * 3 + 2
    target = torch.rand(6, 25, generator=g) * 0.5 + 1e-3
    x = torch.where(u > 0, THR * torch.exp(u), torch.zeros_like(u)).sum(dim=(1, 2))
    assert ((x - target).abs() / target).max() > 0.5      # far off before
    v = rescale_layers(u, target, THR)
    got = torch.where(v > 0, THR * torch.exp(v), torch.zeros_like(v)).sum(dim=(1, 2))
    assert ((got - target).abs() / target).max() < 0.01
    # a layer asked to be empty ends with (almost) nothing in it
    target[:, -1] = 0.0
    v = rescale_layers(u, target, THR)
    last = torch.where(v > 0, THR * torch.exp(v), torch.zeros_like(v))[..., -1].sum(dim=(1, 2))
    assert float(last.max()) < 1e-4


def _tagged_sampler(counts: list[int]) -> LayerEnergySampler:
    """Entry j of knot k holds the fraction 1000 k + j in every layer; unfilled entries NaN."""
    K, M = len(counts), 8
    table = torch.full((K, M, 25), float("nan"))
    for k, n in enumerate(counts):
        for j in range(n):
            table[k, j] = 1000.0 * k + j
    s = LayerEnergySampler(K, M)
    s.fill(table, torch.tensor(counts, dtype=torch.float32),
           torch.linspace(math.log(2.0), math.log(500.0), K))
    return s


def test_sampler_interpolates_knots_in_ln_e_and_draws_filled_entries_uniformly() -> None:
    s = _tagged_sampler([8, 3, 8, 5])
    n = 40000
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(2))
    ell = s.knots
    # exactly on knot 1: always knot 1, entries 0..2 with probability 1/3 each
    e = torch.full((n,), float(torch.exp(ell[1])))
    tag = s(z, e)[:, 0] / e
    assert torch.isfinite(tag).all()
    k, j = torch.div(tag.round(), 1000, rounding_mode="floor"), tag.round() % 1000
    assert set(k.tolist()) == {1.0}
    freq = torch.bincount(j.long(), minlength=3).float() / n
    assert torch.allclose(freq, torch.full((3,), 1 / 3), atol=4 * math.sqrt(2 / 9 / n))
    # a quarter of the way from knot 2 to knot 3 in ln E: knot 3 with probability 1/4
    e = torch.exp(torch.full((n,), float(0.75 * ell[2] + 0.25 * ell[3])))
    tag = (s(z, e)[:, 0] / e).round()
    upper = float((tag >= 3000).float().mean())
    assert abs(upper - 0.25) < 4 * math.sqrt(0.25 * 0.75 / n)
    assert torch.isfinite(tag).all() and set(tag[tag >= 3000].remainder(1000).tolist()) <= {
        0.0, 1.0, 2.0, 3.0, 4.0}
    # below and above the range: the end knots
    lo = (s(z[:100], torch.full((100,), 1.0))[:, 0] / 1.0).round()
    hi = (s(z[:100], torch.full((100,), 900.0))[:, 0] / 900.0).round()
    assert (lo < 1000).all() and (hi >= 3000).all()


def test_library_holds_the_mc_events_layer_fractions(tmp_path) -> None:
    path = tmp_path / "lib.h5"
    simulate_to_file(path, n_events=24, energies=[10.0, 100.0], seed=5, progress=False)
    with h5py.File(path) as f:
        ecal = f["ECAL"][:].astype(np.float64)
        e = f["energy"][:].reshape(-1).astype(np.float64)
    frac = np.where(ecal >= THR, ecal, 0).sum(axis=(1, 2)) / e[:, None]
    lib = build_library(path, THR, knots=2, entries=16, min_entries=4)
    assert np.allclose(np.exp(lib["knots"]), [10.0, 100.0], rtol=1e-5)
    assert lib["counts"].tolist() == [12.0, 12.0]
    for k, energy in enumerate((10.0, 100.0)):
        mine = np.sort(frac[np.isclose(e, energy)].sum(axis=1))
        rows = lib["table"][k, :12].sum(axis=1)
        assert np.allclose(np.sort(rows), mine, rtol=1e-5)


def test_a_library_of_two_files_pools_their_events_per_knot(tmp_path) -> None:
    """Two MC files at the same two energies: each knot holds the events of both (12 + 6), and a
    sampler of another size refuses the table."""
    paths = [tmp_path / "a.h5", tmp_path / "b.h5"]
    for path, n, seed in zip(paths, (24, 12), (5, 6), strict=True):
        simulate_to_file(path, n_events=n, energies=[10.0, 100.0], seed=seed, progress=False)
    fracs = []
    for path in paths:
        with h5py.File(path) as f:
            ecal = f["ECAL"][:].astype(np.float64)
            e = f["energy"][:].reshape(-1).astype(np.float64)
        fracs.append((np.where(ecal >= THR, ecal, 0).sum(axis=(1, 2)) / e[:, None], e))
    lib = build_library(paths, THR, knots=2, entries=32, min_entries=4)
    assert lib["counts"].tolist() == [18.0, 18.0]
    for k, energy in enumerate((10.0, 100.0)):
        mine = np.sort(np.concatenate([f[np.isclose(e, energy)].sum(axis=1) for f, e in fracs]))
        assert np.allclose(np.sort(lib["table"][k, :18].sum(axis=1)), mine, rtol=1e-5)
    sampler = sampler_from(lib)
    assert tuple(sampler.table.shape) == (2, 32, 25)
    with pytest.raises(ValueError, match="library table"):
        LayerEnergySampler(2, 16).fill(*(torch.as_tensor(lib[k])
                                         for k in ("table", "counts", "knots")))


def test_generator_with_a_library_draws_its_layer_energies_and_round_trips(tmp_path) -> None:
    from caloforge.gan.checkpoint import load_generator, save_generator
    from caloforge.gan.export import export_onnx

    torch.manual_seed(0)
    g = PhaseGenerator(layer_library=(4, 8))
    with torch.no_grad():  # a varied image (an untrained one is flat: all cells of a layer alike)
        g.up2.weight.normal_(0.0, 0.3)
        g.prior.copy_(torch.randn(g.prior.shape, generator=torch.Generator().manual_seed(4)) * 3)
    table = torch.rand(4, 8, 25) * 1e-3 + 1e-4
    g.layers.fill(table, torch.full((4,), 8.0), torch.linspace(math.log(2.0), math.log(500.0), 4))
    g.eval()
    assert g.latent_dim == PHASE_LATENT_DIM + 2
    z = torch.randn(5, g.latent_dim, generator=torch.Generator().manual_seed(3))
    e = torch.tensor([2.0, 10.0, 50.0, 200.0, 500.0])
    with torch.no_grad():
        x = g(z, e)
    layer_frac = x.sum(dim=(1, 2)) / e[:, None]                     # (5, 25)
    rows = table.reshape(32, 25)
    rel = ((layer_frac[:, None, :] - rows[None]).abs() / rows[None]).amax(dim=2)   # (5, 32)
    assert float(rel.min(dim=1).values.max()) < 0.01               # each shower is a library row
    p = save_generator(g, tmp_path / "g.safetensors")
    g2 = load_generator(p)
    assert g2.latent_dim == g.latent_dim
    with torch.no_grad():
        assert torch.equal(g2(z, e), x)
    import onnxruntime as ort

    onnx = export_onnx(g, tmp_path / "g.onnx")
    sess = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    out = sess.run(None, {names[0]: z.numpy(), names[1]: e.numpy()})[0]
    assert np.abs(out - x.numpy()).max() <= 1e-4 * float(x.max())


def test_the_exported_graph_holds_the_library_once(tmp_path) -> None:
    """With the layer-occupancy coupling the graph needs the library's per-knot mean ln energy
    (``LayerEnergySampler.log_mean``): it is a (K, Z) constant there, not a second copy of the
    (K, M, Z) table; the graph still equals torch, the cross-layer occupancy coupling
    included."""
    import onnx
    import onnxruntime as ort

    from caloforge.gan.export import export_onnx

    torch.manual_seed(0)
    g = PhaseGenerator(layer_library=(4, 64), sparse=True, layer_occupancy=True)
    table = torch.rand(4, 64, 25, generator=torch.Generator().manual_seed(2)) * 1e-3 + 1e-4
    g.layers.fill(table, torch.full((4,), 64.0), torch.linspace(math.log(2.0), math.log(500.0), 4))
    with torch.no_grad():
        g.occ_layer.fill_(0.5)
    g.eval()
    z = torch.randn(6, g.latent_dim, generator=torch.Generator().manual_seed(3))
    e = torch.tensor([2.0, 7.0, 30.0, 100.0, 250.0, 500.0])
    with torch.no_grad():
        uncrossed = g(z, e).numpy()
        # the cross-layer occupancy coupling (a layer's hits follow the other layers' energies)
        g.occ_cross.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(4))
        g.occ_cross.diagonal(dim1=1, dim2=2).zero_()
    path = export_onnx(g, tmp_path / "g.onnx")
    sizes = [int(np.prod(i.dims)) for i in onnx.load(str(path)).graph.initializer]
    assert sizes.count(4 * 64 * 25) == 1
    with torch.no_grad():
        x = g(z, e).numpy()
    assert not np.array_equal(x > 0, uncrossed > 0)   # the coupling moves hits
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    out = sess.run(None, {names[0]: z.numpy(), names[1]: e.numpy()})[0]
    assert np.array_equal(out > 0, x > 0)
    assert np.abs(out - x).max() <= 1e-4 * float(x.max())
