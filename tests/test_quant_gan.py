"""The GAN tuning objective (``caloforge.workflows.objective``) wired to the shipped generator."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_gan_objective_calibration_and_metric(mc_file):
    import openvino as ov

    from caloforge.gan.shipped import default_onnx_path
    from caloforge.quant import Criterion
    from caloforge.workflows.objective import gan_objective

    model = default_onnx_path()
    one = Criterion(0.01)  # the 3DGAN metric alone: evaluate returns one number
    obj = gan_objective(model, mc_file, calibration_size=5, reference_events=96, seed=1,
                        criterion=one)
    assert len(obj.calibration) == 5
    lo, hi = obj.energy_range
    for sample in obj.calibration:
        assert sample["z"].shape == (1, 200) and sample["z"].dtype == np.float32
        assert sample["energy"].shape == (1,) and lo <= float(sample["energy"][0]) <= hi
    compiled = ov.Core().compile_model(str(model), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    first = obj.evaluate(compiled)
    assert np.isfinite(first) and first >= 0
    assert obj.evaluate(compiled) == first  # fixed latent noise: the same model, the same metric
    # the same calibration again (seeded)
    again = gan_objective(model, mc_file, calibration_size=5, reference_events=96, seed=1,
                          criterion=one)
    assert all(np.array_equal(a["z"], b["z"]) for a, b in zip(obj.calibration, again.calibration, strict=True))


def test_runtime_compiles_a_tuned_ir_with_its_stored_precision(tmp_path):
    """A tuned IR with a BF16 layer carries the bf16 hint; ``caloforge.runtime`` (``generate``,
    ``bench``) must compile it with that hint so the layer runs BF16 and the others INT8, and
    a tuned IR without BF16 layers in f32."""
    import openvino as ov

    from caloforge.gan.shipped import default_onnx_path
    from caloforge.ovgraph import find_layers, runtime_precisions
    from caloforge.quant import BF16, FP32, INT8, Config
    from caloforge.quant.build import Builder
    from caloforge.runtime import calibration_inputs, compile_model, latent_noise
    from caloforge.workflows.objective import runtime_graph

    model = runtime_graph(default_onnx_path())[0]
    names = [layer.name for layer in find_layers(model)]
    builder = Builder(model, calibration_inputs(8, (2.0, 500.0)))
    last = names[-1]
    z, e = latent_noise(2, 0, 4), np.array([10.0, 50.0, 200.0, 450.0], np.float32)
    fp32 = compile_model(None, "fp32", streams=1, batch_size=4).run(z, e)
    for extra, expected in ((BF16, "bf16"), (FP32, "f32")):
        path = tmp_path / f"tuned_{extra}.xml"
        ov.save_model(builder.build(Config.uniform(names, INT8).with_precision(last, extra)),
                      str(path), compress_to_fp16=False)
        gen = compile_model(path, "int8", streams=1, batch_size=4)
        assert gen.info["precision_hint"] == expected
        rows = {r.name: r.precision for r in runtime_precisions(gen.compiled)}
        last_rows = [p for n, p in rows.items() if last in n]
        assert last_rows and all(p == expected for p in last_rows), rows
        assert sum(p in ("i8", "u8") for p in rows.values()) >= len(names) - 1, rows
        out = gen.run(z, e)
        assert np.linalg.norm(out - fp32) / np.linalg.norm(fp32) < 0.2


def _quantized_inputs(model) -> set[str]:
    """Conv/Gemm nodes whose data input comes from a DequantizeLinear (through shape-only ops
    such as Pad, Resize, Reshape): the layers that run INT8."""
    from caloforge.quant.qdq import _AGNOSTIC_ONNX

    producer = {out: n for n in model.graph.node for out in n.output}

    def dequantized(tensor: str, depth: int = 0) -> bool:
        src = producer.get(tensor)
        if src is None or depth > 8:
            return False
        if src.op_type == "DequantizeLinear":
            return True
        return src.op_type in _AGNOSTIC_ONNX and dequantized(src.input[0], depth + 1)

    return {n.name for n in model.graph.node
            if n.op_type in ("Conv", "Gemm", "MatMul") and dequantized(n.input[0])}


def test_qdq_onnx_of_a_configuration_tuned_on_the_rewritten_graph(tmp_path):
    """The tuner tunes the runtime's rewritten graph; its QDQ ONNX export maps every tuned layer
    back to the original ONNX nodes (the folded dense layer to both the Gemm and conv1) and
    quantizes exactly those."""
    import onnx
    import onnxruntime as ort

    from caloforge.gan.shipped import default_onnx_path
    from caloforge.ovgraph import find_layers
    from caloforge.quant import FP32, INT8, Config
    from caloforge.quant.qdq import export_qdq_onnx, onnx_nodes_for
    from caloforge.runtime import calibration_inputs, latent_noise
    from caloforge.workflows.objective import runtime_graph

    src = default_onnx_path()
    names = [layer.name for layer in find_layers(runtime_graph(src)[0])]
    graph = onnx.load(str(src)).graph
    mapped = {name: onnx_nodes_for(name, graph) for name in names}
    dense = next(n for n in names if n.endswith("/dense_folded"))
    assert sorted(mapped[dense]) == ["/conv1/Conv", "/dense/Gemm"]
    assert all(len(v) == 1 for k, v in mapped.items() if k != dense)

    calibration = calibration_inputs(8, (2.0, 500.0))
    z, e = latent_noise(4, 0, 6), np.linspace(10.0, 450.0, 6).astype(np.float32)
    fp32 = ort.InferenceSession(str(src)).run(None, {"z": z, "energy": e})[0]
    for float_layer in (names[-1], dense):
        config = Config.uniform(names, INT8).with_precision(float_layer, FP32)
        path, status = export_qdq_onnx(src, config, calibration, tmp_path / "q.onnx")
        assert path is not None, status
        model = onnx.load(str(path))
        expected = {node for n in names if n != float_layer for node in mapped[n]}
        assert _quantized_inputs(model) == expected
        out = ort.InferenceSession(str(path)).run(None, {"z": z, "energy": e})[0]
        assert np.linalg.norm(out - fp32) / np.linalg.norm(fp32) < 0.2
