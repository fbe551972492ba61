"""A sparse generator's hits agree with the layer energies it is rescaled to: a layer given less
than the cell threshold has no hit (the MC has none there), a layer given more has at least one
and holds that energy, whatever the occupancy logits say (``PhaseGenerator._layer_rule``)."""

from __future__ import annotations

import numpy as np
import torch

from caloforge.gan.phase import PhaseGenerator

THR = 1e-6


def _generator(layer_logits: dict[int, float]) -> PhaseGenerator:
    torch.manual_seed(1)
    gen = PhaseGenerator(layer_library=(4, 8), sparse=True)
    with torch.no_grad():
        gen.up2.weight.zero_()
        gen.up2.bias.zero_()
        gen.noise_occ.fill_(0.1)
        prior = gen.prior_sparse.clone().reshape(2, -1, 25, 25, 25)
        prior[0] = 0.0                  # every cell fires about half the time ...
        for layer, logit in layer_logits.items():
            prior[0, :, :, :, layer] = logit
        # cells differ (as a data prior's do): a noise number feeds ~5 cells, so with equal
        # logits two cells of a layer could tie exactly
        prior[0] += 0.5 * torch.rand(prior[0].shape, generator=torch.Generator().manual_seed(4))
        prior[1] = 5.0
        gen.set_prior(gen.prior, gen.prior_knots, prior.reshape(2, prior.shape[1], -1))
    return gen.eval()


def test_layers_without_energy_have_no_hit_and_layers_with_energy_at_least_one() -> None:
    n = 8
    gen = _generator({3: -30.0, 5: 30.0, 9: -30.0})   # 3 and 9 never fire, 5 always
    target = torch.full((n, 25), 0.05)
    target[:, 3] = 0.01                    # energy, but no cell would fire
    target[:, 5] = 0.0                     # no energy, but every cell would fire
    target[:, 9] = 0.5 * THR               # below the threshold: an empty MC layer
    target[:, 12] = 0.0
    z = torch.randn(n, gen.latent_dim, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        x = gen(z, torch.full((n,), 50.0), layer_energies=target).numpy()
    hits = (x > 0).sum(axis=(1, 2))                                   # (n, 25)
    assert hits[:, 3].min() == hits[:, 3].max() == 1                   # its top cell alone
    np.testing.assert_allclose(x[..., 3].sum(axis=(1, 2)), 0.01, rtol=1e-4)
    assert hits[:, 5].max() == hits[:, 9].max() == hits[:, 12].max() == 0
    others = [k for k in range(25) if k not in (3, 5, 9, 12)]
    assert hits[:, others].min() > 50                 # ordinary layers: untouched, ~half fire
    np.testing.assert_allclose(x[..., others].sum(axis=(1, 2)), 0.05, rtol=2e-3)


def test_the_rule_keeps_a_layer_whose_cells_fire_as_they_are() -> None:
    """A layer with energy and fired cells is not moved: the same cells fire with and without
    the rule (the rule's shift is 0 there)."""
    gen = _generator({})
    n = 4
    target = torch.full((n, 25), 0.05)
    z = torch.randn(n, gen.latent_dim, generator=torch.Generator().manual_seed(3))
    e = torch.full((n,), 50.0)
    with torch.no_grad():
        logit, _, _, _ = gen._sparse_inputs(z, e, target)
        plain = gen._network(z, e)[:, 0] + gen._cell_noise(z, 0)
    assert torch.equal(logit > 0, plain > 0)


def test_the_top_cell_of_an_empty_layer_fires_under_bf16_rounding() -> None:
    """bf16 keeps 8 bits of mantissa: near -40 its spacing is 0.25, so a lift by a small
    constant added to the logits is rounded away; the rule picks the top cell exactly (with
    any cell that ties with it at bf16 precision)."""
    gen = _generator({})
    g = torch.Generator().manual_seed(5)
    logit = (-40.0 - 5.0 * torch.rand((3, 25, 25, 25), generator=g)).to(torch.bfloat16)
    target = torch.full((3, 25), 0.05, dtype=torch.bfloat16)
    target[:, 7] = 0.0                                       # one layer without energy
    out = gen._layer_rule(logit, target)
    assert out.dtype == torch.bfloat16
    hits = (out > 0).sum(dim=(1, 2))                                           # (3, 25)
    assert hits[:, 7].max() == 0
    others = [k for k in range(25) if k != 7]
    assert hits[:, others].min() >= 1
    top = logit.float().amax(dim=(1, 2))                    # every fired cell is the layer's top
    lowest = torch.where(out > 0, logit.float(), torch.tensor(float("inf"))).amin(dim=(1, 2))
    assert torch.equal(lowest[:, others], top[:, others])


def test_training_gradients_pass_the_rule_to_every_cell_of_a_lifted_layer() -> None:
    """The rule's shifts are constants: d sigmoid(out) / d logit = sigmoid'(out) for the cells of
    a layer moved up (whose top is picked), as for an ordinary layer."""
    gen = _generator({})
    g = torch.Generator().manual_seed(6)
    logit = (-3.0 - torch.rand((2, 25, 25, 25), generator=g)).requires_grad_(True)
    target = torch.full((2, 25), 0.05)
    out = gen._layer_rule(logit, target)
    torch.sigmoid(out).sum().backward()
    s = torch.sigmoid(out.detach())
    assert logit.grad is not None
    torch.testing.assert_close(logit.grad, s * (1 - s))
    assert float(out.detach().amax(dim=(1, 2)).min()) == 1.0    # each layer's top picked
