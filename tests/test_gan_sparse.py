"""The sparse output head of the phase generator (``caloforge.gan.sparse``): cells are exact zeros
or at least the threshold, fired exactly where the occupancy logit is positive, rescaled to the
requested layer energies without moving the occupancy; a sparse generator round-trips through
safetensors and ONNX; with its probit prior and unit noise a cell fires with the prior's
hit probability."""

from __future__ import annotations

import numpy as np
import torch

from caloforge.gan.phase import PhaseGenerator
from caloforge.gan.sparse import noise_maps, sparse_cells

THR = 1e-6


def test_sparse_cells_fire_where_the_logit_is_positive_and_hit_the_layer_energies() -> None:
    g = torch.Generator().manual_seed(0)
    logit = torch.randn(4, 25, 25, 25, generator=g) - 1.0
    value = torch.randn(4, 25, 25, 25, generator=g) * 2 + 3
    target = torch.rand(4, 25, generator=g) * 0.1 + 0.01
    t, x, occ = sparse_cells(logit, value, target, THR)
    fired = logit > 0
    assert torch.equal(x > 0, fired)                       # occupancy untouched by the rescale
    assert float(x[fired].min()) >= THR * (1 - 1e-6)       # never below the threshold
    assert torch.allclose(occ, fired.float(), atol=1e-6)   # straight-through: 0/1 in value
    assert torch.allclose(t[fired], torch.log(x[fired] / THR), atol=1e-5)
    rel = (x.sum(dim=(1, 2)) - target).abs() / target
    assert float(rel.max()) < 0.01
    # without a target the energy is threshold x e^softplus(value)
    _, x0, _ = sparse_cells(logit, value, None, THR)
    expected = THR * torch.exp(torch.nn.functional.softplus(value)) * fired
    assert torch.allclose(x0, expected, rtol=1e-5, atol=0)


def test_noise_maps_use_every_source_number_evenly() -> None:
    maps = noise_maps(15625, 3087)
    assert maps.shape == (2, 15625)
    for m in maps:
        counts = torch.bincount(m, minlength=3087)
        assert int(counts.min()) >= 5 and int(counts.max()) <= 6   # 15625 / 3087 = 5.06
    assert not torch.equal(maps[0], maps[1])


def test_sparse_generator_fires_cells_with_the_prior_hit_probability_and_round_trips(
        tmp_path) -> None:
    import onnxruntime as ort

    from caloforge.gan.checkpoint import load_generator, save_generator
    from caloforge.gan.export import export_onnx
    from caloforge.gan.steps import _adapt_init

    torch.manual_seed(1)
    old = PhaseGenerator()
    new = PhaseGenerator(sparse=True)
    new.load_state_dict(_adapt_init(dict(old.state_dict()), new), strict=False)
    assert torch.equal(new.dense2.weight, old.dense2.weight)      # all but the last layer copied
    assert new.up2.weight.shape[1] == 2
    p_hit = torch.rand(15625, generator=torch.Generator().manual_seed(2)) * 0.9 + 0.05
    prior = torch.stack([torch.special.ndtri(p_hit), torch.full((15625,), 5.0)])
    with torch.no_grad():
        new.up2.weight.zero_()
        new.up2.bias.zero_()
        new.prior_sparse.copy_(prior[:, None, :].expand(2, new.prior_sparse.shape[1], 15625))
    new.eval()
    n = 400
    z = torch.randn(n, new.latent_dim, generator=torch.Generator().manual_seed(3))
    e = torch.full((n,), 50.0)
    with torch.no_grad():
        x = new(z, e)
    freq = (x > 0).float().mean(dim=0).reshape(-1)
    # per cell a binomial(400, p) frequency: the mean deviation is tiny, none is far off
    assert float((freq - p_hit).abs().mean()) < 0.025
    assert float(((freq - p_hit).abs() / torch.sqrt(p_hit * (1 - p_hit) / n)).max()) < 5.5
    p = save_generator(new, tmp_path / "sparse.safetensors")
    back = load_generator(p)
    assert back.sparse
    z, e = z[:3], torch.tensor([5.0, 50.0, 400.0])
    with torch.no_grad():
        ref = new(z, e)
        assert torch.equal(back(z, e), ref)
    onnx = export_onnx(new, tmp_path / "sparse.onnx")
    sess = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    out = sess.run(None, {names[0]: z.numpy(), names[1]: e.numpy()})[0]
    assert np.array_equal(out > 0, ref.numpy() > 0)
    assert np.abs(out - ref.numpy()).max() <= 1e-4 * float(ref.max())
