"""The sparse output head of the phase generator (``caloforge.gan.sparse``): cells are exact zeros
or at least the threshold, fired exactly where the occupancy logit is positive, rescaled to the
requested layer energies without moving the occupancy; a sparse generator round-trips through
safetensors and ONNX; a one-channel model's weights seed it with the same hit pattern."""

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


def test_sparse_generator_round_trips_and_is_seeded_by_a_one_channel_model(tmp_path) -> None:
    import onnxruntime as ort

    from caloforge.gan.checkpoint import load_generator, save_generator
    from caloforge.gan.export import export_onnx
    from caloforge.gan.steps import _adapt_init

    torch.manual_seed(1)
    old = PhaseGenerator()
    with torch.no_grad():
        old.up2.weight.normal_(0.0, 0.3)
        old.prior.copy_(torch.randn(old.prior.shape, generator=torch.Generator().manual_seed(2)))
    new = PhaseGenerator(sparse=True)
    new.load_state_dict(_adapt_init(dict(old.state_dict()), new), strict=False)
    with torch.no_grad():
        new.noise_occ.zero_()
        new.noise_val.zero_()
    old.eval()
    new.eval()
    z = torch.randn(3, new.latent_dim, generator=torch.Generator().manual_seed(3))
    e = torch.tensor([5.0, 50.0, 400.0])
    with torch.no_grad():
        x_old, x_new = old(z, e), new(z, e)
    assert torch.equal(x_old > 0, x_new > 0)               # same hit pattern from the same weights
    p = save_generator(new, tmp_path / "sparse.safetensors")
    back = load_generator(p)
    assert back.sparse
    with torch.no_grad():
        assert torch.equal(back(z, e), x_new)
    onnx = export_onnx(new, tmp_path / "sparse.onnx")
    sess = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    out = sess.run(None, {names[0]: z.numpy(), names[1]: e.numpy()})[0]
    assert np.array_equal(out > 0, x_new.numpy() > 0)
    assert np.abs(out - x_new.numpy()).max() <= 1e-4 * float(x_new.max())
