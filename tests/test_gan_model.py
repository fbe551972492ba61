"""3DGAN model: shapes, parameter counts, losses, bf16 guard, ONNX export, weight files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from caloforge.errors import UserError
from caloforge.gan.checkpoint import load_generator, save_generator, save_tensors
from caloforge.gan.losses import ProfileMatchingLoss, bce, event_moments, mape
from caloforge.gan.model import Discriminator, Generator, count_parameters


def _with_bn_stats(gen: Generator) -> Generator:
    """Give the BatchNorm layers non-trivial running statistics."""
    g = torch.Generator().manual_seed(3)
    gen.train()
    with torch.no_grad():
        for _ in range(3):
            gen(torch.randn(8, 200, generator=g), 2 + 498 * torch.rand(8, generator=g))
    return gen.eval()


def test_shapes_and_parameter_counts_match_the_reference() -> None:
    torch.manual_seed(0)
    gen, disc = Generator(), Discriminator()
    assert count_parameters(gen) == 872_948
    assert count_parameters(disc) == 73_450
    z, e = torch.randn(3, 200), torch.tensor([2.0, 100.0, 500.0])
    out = gen(z, e)
    assert out.shape == (3, 25, 25, 25)
    assert gen.forward_scaled(z, e).shape == (3, 1, 25, 25, 25)
    p, en, ecal = disc(out * gen.image_scale)
    assert p.shape == en.shape == ecal.shape == (3,)
    assert ((p > 0) & (p < 1)).all()
    assert torch.allclose(ecal, (out * gen.image_scale).sum(dim=(1, 2, 3)))


def test_loss_helpers() -> None:
    assert float(mape(torch.tensor([90.0]), torch.tensor([100.0]))) == pytest.approx(10.0)
    assert float(bce(torch.tensor([1.0]), torch.tensor([1.0]))) < 1e-6
    x = torch.zeros(1, 25, 25, 25)
    x[0, 12, 10, 3] = 2.0
    x[0, 12, 14, 3] = 2.0
    m = event_moments(x)[0]
    assert m[0].tolist() == pytest.approx([12.0, 12.0, 3.0])
    assert m[1].tolist() == pytest.approx([0.0, 4.0, 0.0])


def test_one_step_reduces_the_losses_on_a_fixed_batch() -> None:
    torch.manual_seed(1)
    real = torch.rand(6, 25, 25, 25) * (torch.rand(6, 25, 25, 25) < 0.05) * 20
    e = torch.tensor([10.0, 50.0, 100.0, 200.0, 300.0, 450.0])
    disc = Discriminator(dropout=0.0)
    # MAPE on E/100 has steep gradients for low energies: a small plain gradient step
    opt_d = torch.optim.SGD(disc.parameters(), lr=1e-6)

    def d_loss() -> torch.Tensor:
        p, en, _ = disc(real)
        return 2 * bce(p, torch.ones(6)) + 0.1 * mape(en, e / 100)

    before = d_loss()
    opt_d.zero_grad()
    before.backward()
    opt_d.step()
    assert float(d_loss().detach()) < float(before.detach())

    gen = Generator()
    stats = {f"profile_mean_{a}": [0.1] * 25 for a in "xyz"}
    stats["moment_scale"] = [12.0, 12.0, 10.0, 2.0, 2.0, 20.0]
    aux = ProfileMatchingLoss(stats, n_groups=2)
    opt_g = torch.optim.Adam(gen.parameters(), lr=1e-4)
    z = torch.randn(6, 200)

    def g_loss() -> torch.Tensor:
        fake = gen.forward_scaled(z, e)[:, 0]
        lp, lm = aux(fake, real, e)
        return 0.1 * mape(fake.sum(dim=(1, 2, 3)), real.sum(dim=(1, 2, 3))) + lp + lm

    before = g_loss()
    opt_g.zero_grad()
    before.backward()
    opt_g.step()
    assert float(g_loss().detach()) < float(before.detach())


def test_bf16_autocast_keeps_the_generator_close_to_fp32() -> None:
    """The first generator conv stays fp32 under autocast (AMX-BF16 bug on this CPU)."""
    torch.manual_seed(2)
    gen = _with_bn_stats(Generator())
    z, e = torch.randn(4, 200), torch.tensor([5.0, 50.0, 200.0, 500.0])
    with torch.no_grad():
        ref = gen(z, e)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = gen(z, e).float()
    rel = float((low - ref).norm() / ref.norm())
    assert rel < 0.05, rel


def test_bf16_guard_runs_the_first_conv_in_float32_under_autocast() -> None:
    """Visible without AMX: the dtypes conv1 actually receives and returns under autocast (the
    precision test above passes on a CPU without AMX even with the guard removed)."""
    gen = _with_bn_stats(Generator())
    seen: dict[str, tuple[torch.dtype, torch.dtype]] = {}

    def record(name: str):  # type: ignore[no-untyped-def]
        def hook(module, inputs, output):  # type: ignore[no-untyped-def]
            seen[name] = (inputs[0].dtype, output.dtype)
        return hook

    for name in ("conv1", "conv2", "conv3"):
        getattr(gen, name).register_forward_hook(record(name))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        gen(torch.randn(2, 200), torch.tensor([10.0, 300.0]))
    # autocast is active: the other convolutions run in bfloat16 ...
    assert seen["conv2"][1] == seen["conv3"][1] == torch.bfloat16, seen
    # ... but conv1 gets and returns float32
    assert seen["conv1"] == (torch.float32, torch.float32), seen
    with torch.no_grad():  # and without autocast everything stays float32
        gen(torch.randn(2, 200), torch.tensor([10.0, 300.0]))
    assert {d for pair in seen.values() for d in pair} == {torch.float32}


def test_onnx_export_parity_with_dynamic_batch(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    from caloforge.gan.export import export_onnx

    torch.manual_seed(4)
    gen = Generator()
    with torch.no_grad():  # mostly positive last layer: a non-trivial (not all-ReLU-zero) output
        gen.conv4.weight.abs_()
    gen.set_prior(0.5 + torch.rand(25, 25, 25), 1.0)
    gen = _with_bn_stats(gen)
    path = export_onnx(gen, tmp_path / "g.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 5):
        z = torch.randn(n, 200)
        e = torch.linspace(2.0, 500.0, n)
        with torch.no_grad():
            ref = gen(z, e).numpy()
        got = sess.run(None, {"z": z.numpy(), "energy": e.numpy()})[0]
        assert got.shape == (n, 25, 25, 25)
        assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 1e-5


def test_generator_file_round_trip(tmp_path) -> None:
    torch.manual_seed(5)
    gen = Generator(image_scale=50.0)
    gen.set_prior(torch.rand(25, 25, 25), 1.0)
    gen = _with_bn_stats(gen)
    save_generator(gen, tmp_path / "g.safetensors", {"epoch": 3})
    back = load_generator(tmp_path / "g.safetensors")
    assert float(back.image_scale) == 50.0
    assert not back.training
    for k, v in gen.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k
    # a file written before the shower prior existed loads with a neutral prior
    state = {k: v for k, v in gen.state_dict().items() if not k.startswith("prior")}
    save_tensors(tmp_path / "old.safetensors", state)
    old = load_generator(tmp_path / "old.safetensors")
    assert torch.equal(old.prior, torch.ones(25, 25, 25)) and float(old.prior_energy_power) == 0.0


def test_neutral_prior_is_the_reference_model_and_the_prior_scales_with_energy() -> None:
    torch.manual_seed(6)
    gen = _with_bn_stats(Generator())
    z, e = torch.randn(2, 200), torch.tensor([50.0, 50.0])
    with torch.no_grad():
        base = gen.forward_scaled(z, e)
        gen.set_prior(torch.full((25, 25, 25), 2.0), 1.0)
        assert torch.allclose(gen.forward_scaled(z, e), base * 2.0 * 0.5)


def test_corrupt_or_mismatched_weights_give_a_clear_user_error(tmp_path) -> None:
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(b"\x00\x01 this is not a safetensors file")
    with pytest.raises(UserError, match=r"corrupt\.safetensors: corrupt or unreadable"):
        load_generator(bad)
    with pytest.raises(UserError, match="no such file"):
        load_generator(tmp_path / "missing.safetensors")
    disc = tmp_path / "disc.safetensors"
    save_tensors(disc, dict(Discriminator().state_dict()))
    with pytest.raises(UserError, match=r"disc\.safetensors: no generator weights"):
        load_generator(disc)
    wrong = tmp_path / "wrong.safetensors"
    state = dict(Generator().state_dict())
    state["conv2.weight"] = torch.zeros(6, 64, 5, 5, 5)
    save_tensors(wrong, state)
    with pytest.raises(UserError, match=r"wrong\.safetensors: tensor 'conv2\.weight' has shape"):
        load_generator(wrong)
    partial = tmp_path / "partial.safetensors"
    state = dict(Generator().state_dict())
    del state["bn1.running_var"]
    save_tensors(partial, state)
    with pytest.raises(UserError, match=r"partial\.safetensors: not a caloforge generator: missing"):
        load_generator(partial)
    nan = tmp_path / "nan.safetensors"
    state = dict(Generator().state_dict())
    state["dense.bias"] = torch.full_like(state["dense.bias"], float("nan"))
    save_tensors(nan, state)
    with pytest.raises(UserError, match="NaN"):
        load_generator(nan)
