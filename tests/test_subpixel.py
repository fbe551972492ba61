"""Sub-pixel transposed convolutions (caloforge.gan.subpixel) and the OpenVINO shuffle rewrites
(caloforge.ovgraph.shuffle): each checked against PyTorch's own ``nn.ConvTranspose3d``, an
independent implementation of the same function."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from caloforge.gan.subpixel import SubPixelConvTranspose3d, subpixel_copy

# (in, out, kernel, stride, padding, output_padding, input size)
CASES = [
    (64, 16, 4, 2, 1, 0, (7, 7, 7)),      # the phase generator's up1
    (16, 1, 4, 2, 1, 0, (14, 14, 14)),    # and its up2
    (3, 2, (3, 4, 5), (2, 2, 3), (1, 0, 2), (1, 0, 0), (4, 5, 6)),  # anisotropic
    (2, 3, 5, 3, 2, 0, (4, 4, 4)),        # stride 3
    (2, 2, 1, 2, 0, 1, (3, 3, 3)),        # kernel smaller than the stride: empty phases
    (3, 2, 4, 2, 2, 0, (5, 5, 5)),        # padding of a whole block
    (2, 2, 6, 3, 4, 2, (4, 4, 4)),
]


@pytest.mark.parametrize("mode", ["fused", "split"])
@pytest.mark.parametrize("case", CASES, ids=[str(c[:6]) for c in CASES])
def test_subpixel_form_equals_torch_conv_transpose(case, mode) -> None:
    cin, cout, k, s, p, op, size = case
    torch.manual_seed(1)
    deconv = nn.ConvTranspose3d(cin, cout, k, stride=s, padding=p, output_padding=op)
    x = torch.randn(2, cin, *size)
    with torch.no_grad():
        want = deconv(x)
        got = SubPixelConvTranspose3d(deconv, mode)(x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_auto_mode_splits_wide_layers_and_fuses_narrow_ones() -> None:
    wide = SubPixelConvTranspose3d(nn.ConvTranspose3d(64, 16, 4, stride=2, padding=1))
    narrow = SubPixelConvTranspose3d(nn.ConvTranspose3d(16, 1, 4, stride=2, padding=1))
    assert (wide.mode, wide.n_convs) == ("split", 8)
    # one convolution with 8 phases x 1 channel, 2^3 taps (no structural zero for k=4, s=2)
    assert (narrow.mode, narrow.n_convs) == ("fused", 1)
    assert tuple(narrow.weight0.shape) == (8, 16, 2, 2, 2)


def test_unsupported_transposed_convolutions_are_refused() -> None:
    with pytest.raises(ValueError, match="groups=1"):
        SubPixelConvTranspose3d(nn.ConvTranspose3d(4, 4, 4, stride=2, groups=2))
    with pytest.raises(ValueError, match="mode"):
        SubPixelConvTranspose3d(nn.ConvTranspose3d(4, 4, 4, stride=2), mode="fast")


def test_subpixel_copy_replaces_every_transposed_convolution_on_a_copy() -> None:
    from caloforge.gan.phase import PhaseGenerator

    torch.manual_seed(0)
    g = PhaseGenerator().eval()
    with torch.no_grad():
        g.up2.weight.normal_(0.0, 0.3)  # a non-trivial output
    copy, names = subpixel_copy(g)
    assert sorted(names) == ["up1", "up2"]
    assert isinstance(g.up1, nn.ConvTranspose3d)  # the original is untouched
    assert not any(isinstance(m, nn.ConvTranspose3d) for m in copy.modules())
    z, e = torch.randn(3, g.latent_dim), torch.tensor([3.0, 60.0, 450.0])
    with torch.no_grad():
        want, got = g(z, e), copy(z, e)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)
    assert torch.equal(got > 0, want > 0)
    plain = nn.Sequential(nn.Conv3d(1, 2, 3))
    assert subpixel_copy(plain) == (plain, [])


class _Cropped(nn.Module):
    """A transposed convolution whose output is cropped and one channel kept, as the phase
    generator does with its 28^3 layer."""

    def __init__(self, deconv: nn.Module) -> None:
        super().__init__()
        self.up = deconv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x)[:, 0, 2:11, 1:12, 3:13]


@pytest.mark.parametrize("cout", [1, 4])
def test_openvino_narrowing_and_depth_to_space_are_exact(tmp_path, cout) -> None:
    """The exported sub-pixel form, narrowed to the crop and its shuffle fused by the runtime's
    rewrites, compiled by OpenVINO, equals PyTorch's ConvTranspose3d followed by the crop."""
    import openvino as ov

    from caloforge.ovgraph import compile_model, optimize_model

    torch.manual_seed(2)
    deconv = nn.ConvTranspose3d(8, cout, 4, stride=2, padding=1)
    x = torch.randn(3, 8, 7, 7, 7)
    with torch.no_grad():
        want = _Cropped(deconv)(x).numpy()
    path = tmp_path / "m.onnx"
    torch.onnx.export(_Cropped(SubPixelConvTranspose3d(deconv, "fused")), (x,), str(path),
                      input_names=["x"], dynamo=False)
    model, rewritten = optimize_model(ov.Core().read_model(path))
    assert rewritten == ["/up/Conv/WithoutBiases"]  # narrowed: blocks 1..6 of 0..7 per axis
    kinds = [op.get_type_name() for op in model.get_ordered_ops()]
    # the shuffle, the crop and the channel selection after it only move numbers: one Gather
    # (caloforge.ovgraph.moves), no DepthToSpace and no shuffle left
    assert "DepthToSpace" not in kinds and kinds.count("Gather") == 1
    compiled = compile_model(model, hint="f32")
    got = compiled.create_infer_request().infer({"x": x.numpy()})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
