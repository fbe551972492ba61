"""Layer sums as matrix products (``caloforge.ovgraph.reductions``) and the sparse head's tail.

``sums_as_matmul`` must give NumPy's sums (float rounding only) for the reductions it rewrites
and leave the others alone; the backend applies it after INT8 quantization, so the new MatMuls
carry no quantizer. The sparse head's inference path with the rescaling at its clamp limits
(every step at +-8) must still equal the training function, and the whole generator through the
backend (FP32, with the rewrite) must equal PyTorch: same fired cells, energies to 1e-5."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from caloforge.gan.sparse import sparse_cells, sparse_gev

THR = 1e-6


def _reduce_model(shape: list[int], axes: list[int], keep: bool):
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter([-1, *shape], np.float32, name="x")
    y = ops.reduce_sum(ops.exp(x), ops.constant(np.array(axes, np.int64)), keep)
    return ov.Model([ops.multiply(y, ops.constant(np.float32(2.0)))], [x])


def _run(model, x: np.ndarray) -> np.ndarray:
    from caloforge.ovgraph import core

    compiled = core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return compiled.create_infer_request().infer({"x": x})[0]


@pytest.mark.parametrize(("axes", "keep", "rewritten"), [
    ([1, 2], False, True), ([1, 2], True, True), ([2], False, True), ([-3, -2], False, True),
    ([3], False, False),      # innermost axis: left to the reduction kernel
    ([0, 1], False, False),   # the batch axis
    ([1, 3], False, False),   # not consecutive
])
def test_sums_as_matmul_equal_numpy_and_only_where_they_apply(axes, keep, rewritten) -> None:
    from caloforge.ovgraph import sums_as_matmul

    shape = [12, 16, 25]
    x = np.random.default_rng(0).normal(0.0, 1.0, (3, *shape)).astype(np.float32)
    model = _reduce_model(shape, axes, keep)
    done = sums_as_matmul(model)
    kinds = [op.get_type_name() for op in model.get_ordered_ops()]
    assert bool(done) == rewritten and ("ReduceSum" in kinds) != rewritten
    want = 2.0 * np.exp(x.astype(np.float64)).sum(axis=tuple(axes), keepdims=keep)
    got = _run(model, x)
    assert got.shape == want.shape
    assert float(np.abs(got - want).max() / np.abs(want).max()) < 1e-6


def test_small_sums_stay() -> None:
    from caloforge.ovgraph import sums_as_matmul

    assert sums_as_matmul(_reduce_model([4, 4, 5], [1, 2], False)) == []


def test_rescaling_at_its_clamp_limits_equals_the_training_function() -> None:
    g = torch.Generator().manual_seed(7)
    logit = torch.randn(4, 25, 25, 25, generator=g)
    value = torch.randn(4, 25, 25, 25, generator=g) * 3.0
    value[0::2, :, :, :3] = 40.0  # cells at the cap, threshold x e^16
    target = torch.rand(4, 25, generator=g) * 0.05
    target[1] = 0.0            # every step -8: shift -24, every fired cell on the threshold
    target[2] = 1e12           # every step +8: shift +24 (the largest products of the passes)
    target[3, ::2] = 1e-9
    want = sparse_cells(logit, value, target, THR)[1]
    got = sparse_gev(logit, value, target, THR)
    assert torch.equal(got > 0, logit > 0) and torch.equal(want > 0, got > 0)
    fired = want > 0
    assert bool(torch.isfinite(got).all())
    # float rounding (the two paths take e^softplus and the e^(+-24) scale in other orders)
    assert float(((got - want).abs()[fired] / want[fired]).max()) < 5e-6
    assert bool((got[1][fired[1]] == torch.tensor(THR)).all())
    # the layers without cells at the cap were scaled by the largest factor, e^24
    x0 = sparse_gev(logit, value, None, THR)
    ratio = got[2][fired[2]] / x0[2][fired[2]]
    assert abs(float(ratio.max()) / np.exp(24.0) - 1.0) < 1e-4


def test_phase_generator_through_the_backend_equals_torch(tmp_path, monkeypatch) -> None:
    from caloforge.gan.export import export_onnx
    from caloforge.gan.phase import PhaseGenerator
    from caloforge.runtime import Calibration, ExecConfig, get_backend

    monkeypatch.setenv("CALOFORGE_CACHE", "off")
    torch.manual_seed(3)
    gen = PhaseGenerator(layer_library=(4, 8), sparse=True, layer_occupancy=True)
    r = torch.Generator().manual_seed(4)
    with torch.no_grad():
        gen.layers.table.copy_(torch.rand(4, 8, 25, generator=r) * 0.06)  # type: ignore[union-attr]
        gen.prior_sparse.copy_(torch.randn(gen.prior_sparse.shape, generator=r) - 0.5)
        gen.noise_skew.copy_(torch.rand(gen.noise_skew.shape, generator=r) * 0.4 - 0.2)
        gen.occ_layer.normal_(0.0, 0.5, generator=r)
        gen.up2.weight.mul_(30.0)
    gen.eval()
    path = export_onnx(gen, tmp_path / "g.onnx")
    n = 8
    z = torch.randn(n, gen.latent_dim, generator=torch.Generator().manual_seed(5))
    e = torch.tensor([2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 300.0, 500.0])
    with torch.no_grad():
        logit, value, target, width2 = gen._sparse_inputs(z, e, None)
        want = sparse_cells(logit, value, target, THR, width2=width2)[1].numpy()
    be = get_backend("openvino")
    compiled = be.compile(path, "fp32", ExecConfig(1, 1, n))
    assert compiled.info["sums_as_matmul"] and len(compiled.info["sums_as_matmul"]) == 3
    got = compiled.run(z.numpy(), e.numpy())
    fired = want > 0
    assert np.array_equal(got > 0, fired)
    assert float((np.abs(got - want)[fired] / want[fired]).max()) < 1e-5
    sums = want.sum(axis=(1, 2))
    assert float((np.abs(got.sum(axis=(1, 2)) - sums) / sums.clip(min=1e-30)).max()) < 1e-5
    # INT8: the sums stay f32 (the rewrite runs after NNCF), nothing quantized feeds them
    q = be.compile(path, "int8", ExecConfig(1, 1, n), calibration=Calibration(samples=16))
    assert len(q.info["sums_as_matmul"]) == 3
    for name in q.info["sums_as_matmul"]:
        node = next(op for op in q.ov_model.get_ordered_ops() if op.get_friendly_name() == name)
        src = node.input_value(0).get_node()   # Reshape <- MatMul(ones, x)
        assert src.get_type_name() == "MatMul"
        assert all(src.input_value(i).get_node().get_type_name() != "FakeQuantize"
                   for i in range(2))
    assert any(op.get_type_name() == "FakeQuantize" for op in q.ov_model.get_ordered_ops())
