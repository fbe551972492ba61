"""The sparse head's inference path and the runtime's data-movement rewrites.

``caloforge.gan.sparse.sparse_gev`` (what ``PhaseGenerator.forward`` and the exported graph run)
must give the energies of the training function ``sparse_cells`` to float rounding, the same
fired cells, rescaled or not; ``caloforge.ovgraph.moves`` must only move numbers (checked
against NumPy doing the same reshape/transpose/crop/selection, and against PyTorch on a small
sparse + layer-library phase generator through ONNX Runtime and OpenVINO)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from caloforge.gan.sparse import sparse_cells, sparse_gev

THR = 1e-6


def _inputs(seed: int, batch: int = 6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logit = torch.randn(batch, 25, 25, 25, generator=g) - 1.2
    value = torch.randn(batch, 25, 25, 25, generator=g) * 3.0 + 1.0
    value[0, 0, 0, :] = 40.0  # at the cap (threshold x e^16)
    logit[1, :, :, 7] = -1.0  # a layer with no fired cell
    # layer energies: ordinary (0.01-0.06 GeV), far below what the cells hold (most of them
    # then scaled below the threshold and clamped to it), zero, and above
    target = torch.rand(batch, 25, generator=g) * 0.05 + 0.01
    target[2] = 1e-7
    target[3, :4] = 0.0
    target[4] = 5.0
    return logit, value, target


@pytest.mark.parametrize("rescaled", [False, True])
def test_inference_path_equals_the_training_function(rescaled: bool) -> None:
    for seed in (0, 1):
        logit, value, target = _inputs(seed)
        t = target if rescaled else None
        want = sparse_cells(logit, value, t, THR)[1]
        got = sparse_gev(logit, value, t, THR)
        assert torch.equal(got > 0, logit > 0)
        assert torch.equal(want > 0, got > 0)
        fired = want > 0
        rel = ((got - want).abs()[fired] / want[fired]).max()
        assert float(rel) < 2e-6
        sums_w, sums_g = want.sum(dim=(1, 2)), got.sum(dim=(1, 2))
        assert float(((sums_g - sums_w).abs() / sums_w.clamp(min=1e-30)).max()) < 2e-6
        assert float(got[fired].min()) >= THR * (1 - 1e-6)   # never below the threshold
    # the clamp at the threshold was exercised: scaled-down cells sit exactly on it
    logit, value, target = _inputs(0)
    got = sparse_gev(logit, value, target, THR)
    assert int((got[2] == torch.tensor(THR)).sum()) > 1000


def _phase_generator():
    from caloforge.gan.phase import PhaseGenerator

    torch.manual_seed(3)
    g = PhaseGenerator(layer_library=(4, 8), sparse=True)
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        g.layers.table.copy_(torch.rand(4, 8, 25, generator=gen) * 0.06)  # type: ignore[union-attr]
        g.layers.knots.copy_(torch.linspace(float(np.log(2.0)), float(np.log(500.0)), 4))  # type: ignore[union-attr]
        g.prior_sparse.copy_(torch.randn(g.prior_sparse.shape, generator=gen) - 0.5)
        g.up2.weight.mul_(30.0)  # a network output that matters next to the prior
    return g.eval()


def test_exported_graph_equals_torch_through_onnxruntime_and_openvino(tmp_path) -> None:
    import onnxruntime as ort

    from caloforge.gan.export import export_onnx
    from caloforge.ovgraph import compile_model, core, optimize_model

    g = _phase_generator()
    path = export_onnx(g, tmp_path / "g.onnx")
    n = 6
    z = torch.randn(n, g.latent_dim, generator=torch.Generator().manual_seed(5))
    e = torch.tensor([2.0, 5.0, 20.0, 100.0, 300.0, 500.0])
    with torch.no_grad():
        ref = g(z, e).numpy()
        logit, value, target, width2 = g._sparse_inputs(z, e, None)
        want = sparse_cells(logit, value, target, THR, width2=width2)[1].numpy()
    assert np.array_equal(ref > 0, want > 0)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {"z": z.numpy(), "energy": e.numpy()}
    outs = {"onnxruntime": sess.run(None, feeds)[0]}
    model, _ = optimize_model(core().read_model(path))
    ops = list(model.get_ordered_ops())
    # up2's 2-channel shuffle + crop + channel selections are Gathers now (no rank-8 Transpose);
    # up1's 16-channel shuffle (read whole by the next layer) stays a DepthToSpace
    assert [op.get_type_name() for op in ops].count("DepthToSpace") == 1
    assert not any(op.get_type_name() == "Transpose" and op.get_input_partial_shape(0).rank
                   .get_length() == 8 for op in ops)
    index_sets = [op.input_value(1).get_node() for op in ops if op.get_type_name() == "Gather"
                  and op.input_value(1).get_node().get_type_name() == "Constant"]
    big = [c.get_data().dtype.name for c in index_sets if c.get_data().size >= 1024]
    assert len(big) == 4 and set(big) == {"int32"}  # cell noise x 2, shuffled channels x 2
    compiled = compile_model(model, hint="f32", config={"INFERENCE_PRECISION_HINT": "f32"})
    outs["openvino"] = compiled.create_infer_request().infer(feeds)[0]
    fired = want > 0
    for got in outs.values():
        assert np.array_equal(got > 0, fired)
        assert float((np.abs(got - want)[fired] / want[fired]).max()) < 1e-4
        sums = want.sum(axis=(1, 2))
        assert float((np.abs(got.sum(axis=(1, 2)) - sums) / sums).max()) < 1e-5


def _chain_model(channels: int):
    """x (N, 8 C, 4, 5, 6) -> +bias -> depth-to-space (blocks first) -> crop -> channel 1 (and
    channel 0 through an addition with a second input y)."""
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter([-1, 8 * channels, 4, 5, 6], np.float32, name="x")
    y = ops.parameter([-1, channels, 6, 8, 9], np.float32, name="y")
    h = ops.add(x, ops.constant(np.arange(8 * channels, dtype=np.float32).reshape(1, -1, 1, 1, 1)))
    h = ops.reshape(h, ops.constant(np.array([0, 2, 2, 2, channels, 4, 5, 6])), True)
    h = ops.transpose(h, ops.constant(np.array([0, 4, 5, 1, 6, 2, 7, 3])))
    h = ops.reshape(h, ops.constant(np.array([0, channels, 8, 10, 12])), True)
    h = ops.slice(h, ops.constant(np.array([1, 2, 3])), ops.constant(np.array([7, 10, 12])),
                  ops.constant(np.array([1, 1, 1])), ops.constant(np.array([2, 3, 4])))
    s = ops.add(h, y)
    outs = [ops.gather(s, ops.constant(np.int64(c)), ops.constant(np.int64(1)))
            for c in range(channels)]
    return ov.Model([ops.result(o) for o in outs], [x, y])


def test_moves_are_exact_and_replace_the_shuffle() -> None:
    from caloforge.ovgraph import collapse_moves, compile_model, gather_before_elementwise

    rng = np.random.default_rng(0)
    c = 2
    x = rng.standard_normal((3, 8 * c, 4, 5, 6)).astype(np.float32)
    y = rng.standard_normal((3, c, 6, 8, 9)).astype(np.float32)
    # NumPy, independently: bias, blocks-first depth-to-space, crop, + y, per channel
    h = x + np.arange(8 * c, dtype=np.float32).reshape(1, -1, 1, 1, 1)
    h = h.reshape(3, 2, 2, 2, c, 4, 5, 6).transpose(0, 4, 5, 1, 6, 2, 7, 3)
    h = h.reshape(3, c, 8, 10, 12)[:, :, 1:7, 2:10, 3:12] + y
    model = _chain_model(c)
    assert gather_before_elementwise(model) != []
    assert len(collapse_moves(model)) == c
    kinds = [op.get_type_name() for op in model.get_ordered_ops()]
    assert "Transpose" not in kinds and "Slice" not in kinds
    got = compile_model(model, hint="f32").create_infer_request().infer({"x": x, "y": y})
    for ch in range(c):
        np.testing.assert_array_equal(got[ch], h[:, ch])


def test_int8_keeps_the_layer_energy_library_exact(tmp_path) -> None:
    """Quantization leaves the library table alone: a shower's layer energies are a row of it
    times the primary energy, so an INT8 graph must give every layer the FP32 graph gives
    energy, and the same layer sums (the rescaling makes them equal to the row). NNCF took the
    table's Gather for an embedding and stored it in 8 bits per row, which rounded a layer
    holding less than half a step (row maximum / 254) to zero."""
    from caloforge.gan.export import export_onnx
    from caloforge.ovgraph import compile_model
    from caloforge.runtime.quantize import Calibration, quantize_int8

    g = _phase_generator()
    gen = torch.Generator().manual_seed(6)
    with torch.no_grad():  # the first and last layers hold 1e-4..1e-3 of the core's fraction
        table = g.layers.table  # type: ignore[union-attr]
        table[:, :, 12] = 0.06  # the row's maximum
        tiny = 10.0 ** (-4.0 + torch.rand(4, 8, 2, generator=gen))
        table[:, :, 0], table[:, :, 24] = 0.06 * tiny[..., 0], 0.06 * tiny[..., 1]
        # no cell of those layers would fire: the layer rule fires one, which holds it all
        g.prior_sparse.view(2, -1, 25, 25, 25)[0, :, :, :, [0, 24]] = -40.0
    path = export_onnx(g, tmp_path / "g.onnx")
    n = 64
    z = torch.randn(n, g.latent_dim, generator=torch.Generator().manual_seed(7))
    e = torch.exp(torch.linspace(float(np.log(2.0)), float(np.log(500.0)), n))
    with torch.no_grad():
        target = g.layers(z[:, -2:], e).numpy()  # type: ignore[misc]
    feeds = {"z": z.numpy(), "energy": e.numpy()}
    int8 = quantize_int8(path, Calibration(samples=32))
    got = compile_model(int8, hint="f32", config={"INFERENCE_PRECISION_HINT": "f32"}) \
        .create_infer_request().infer(feeds)[0]
    sums = got.sum(axis=(1, 2))
    small = target[:, [0, 24]]
    # visible, and below half a step of 8 bits per row (row maximum / 254)
    assert float(small.min()) > THR and float((small / target.max(axis=1)[:, None]).max()) < 3e-3
    assert bool((sums > 0).all())  # no layer with energy lost
    np.testing.assert_allclose(sums[:, [0, 24]], small, rtol=1e-3)  # 3 passes
    assert ((got[:, :, :, [0, 24]] > 0).sum(axis=(1, 2)) == 1).all()
