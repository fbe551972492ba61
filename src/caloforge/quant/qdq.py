"""QDQ ONNX export of a tuned configuration (best effort).

NNCF's ONNX backend quantizes the original ONNX model with the non-INT8 layers in its ignored
scope and writes QuantizeLinear/DequantizeLinear pairs. It needs onnxruntime (calibration runs
there) and an ONNX input. BF16 layers have no QDQ form: they stay FP32 in the ONNX file (the
OpenVINO IR is the reference output of the tuner). The ONNX file is calibrated separately, so its
ranges can differ slightly from the IR's. Quantize/Dequantize pairs that NNCF puts in front of
ops that are not tuned (and that the IR does not keep either) are removed (:func:`prune_qdq`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from caloforge.atomic import atomic_path
from caloforge.quant.config import INT8, Config

log = logging.getLogger(__name__)


def onnx_node_for(layer: str, onnx_names: Sequence[str]) -> str | None:
    """The ONNX node an OpenVINO layer came from (``/c1/Conv/WithoutBiases`` -> ``/c1/Conv``)."""
    if layer in onnx_names:
        return layer
    matches = [n for n in onnx_names if n and layer.startswith(n + "/")]
    return max(matches, key=len) if matches else None


_TUNED_ONNX = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
_AGNOSTIC_ONNX = frozenset({"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Pad", "Resize",
                            "MaxPool", "Slice", "Flatten", "DepthToSpace", "SpaceToDepth"})
DENSE_FOLDED = "/dense_folded"
"""Name suffix :mod:`caloforge.ovgraph.dense` gives a dense layer folded into the
convolution after it (one layer of the tuned graph, two nodes of the ONNX file)."""


def onnx_nodes_for(layer: str, graph: Any) -> list[str]:
    """The ONNX nodes a tuned layer stands for: the node its name came from, plus, for a dense
    layer folded into a convolution (``.../dense_folded``), the Gemm/MatMul feeding that
    convolution through shape-only ops. Empty when the layer cannot be mapped."""
    names = [node.name for node in graph.node]
    node_name = onnx_node_for(layer, names)
    if node_name is None:
        return []
    found = [node_name]
    if DENSE_FOLDED in layer:
        producer = {out: node for node in graph.node for out in node.output}
        node = next(n for n in graph.node if n.name == node_name)
        tensor = node.input[0]
        for _ in range(8):
            src = producer.get(tensor)
            if src is None:
                return []
            if src.op_type in ("Gemm", "MatMul"):
                found.append(src.name)
                break
            if src.op_type not in _AGNOSTIC_ONNX:
                return []
            tensor = src.input[0]
        else:
            return []
    return found


def prune_qdq(model: Any, int8_nodes: set[str]) -> int:
    """Remove activation Quantize/Dequantize pairs that feed no INT8 layer (in place).

    NNCF also quantizes inputs of ops the tuner does not tune (Mul, BatchNorm, Resize, Gather,
    the model inputs); the IR drops those quantizers (see ``build.apply_precisions``), and so does
    this, so both files run the same layers in INT8. Returns the number of pairs removed.
    """
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}

    def feeds_int8(tensor: str, depth: int = 0) -> bool:
        for node in consumers.get(tensor, []):
            if node.op_type in _TUNED_ONNX and node.name in int8_nodes:
                return True
            if node.op_type in _AGNOSTIC_ONNX and depth < 8 and node.input and node.input[0] == tensor \
                    and feeds_int8(node.output[0], depth + 1):
                return True
        return False

    removed = []
    for dq in [n for n in graph.node if n.op_type == "DequantizeLinear"]:
        q = producer.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear" or dq.output[0] in outputs:
            continue  # weights (initializer input) or a model output: leave
        if feeds_int8(dq.output[0]) or len(consumers.get(q.output[0], [])) != 1:
            continue
        source = q.input[0]
        for node in consumers.get(dq.output[0], []):
            for i, name in enumerate(node.input):
                if name == dq.output[0]:
                    node.input[i] = source
        removed += [q, dq]
    dropped = {name for node in removed for name in node.input[1:]}  # scales, zero points
    for node in removed:
        graph.node.remove(node)
    used = {name for node in graph.node for name in node.input}
    for init in [i for i in graph.initializer if i.name in dropped and i.name not in used]:
        graph.initializer.remove(init)
    return len(removed) // 2


def export_qdq_onnx(model_path: Path | None, config: Config,
                    calibration: Sequence[Mapping[str, np.ndarray]],
                    output: Path) -> tuple[Path | None, str]:
    """Write ``output`` (QDQ ONNX for ``config``); returns (path or None, status line)."""
    if model_path is None or model_path.suffix.lower() != ".onnx":
        return None, "not written: the input model is not an ONNX file"
    try:
        import onnxruntime  # noqa: F401 (NNCF's ONNX backend calibrates with it)
    except ImportError:
        return None, "not written: onnxruntime is not installed (pip install caloforge[onnxruntime])"
    try:
        import nncf
        import onnx

        from caloforge.quant.params import nncf_arguments

        proto = onnx.load(str(model_path))
        unmapped, int8_nodes = [], set()
        for layer, precision in config.precisions.items():
            nodes = onnx_nodes_for(layer, proto.graph)
            if not nodes:
                unmapped.append(layer)
            elif precision == INT8:
                int8_nodes.update(nodes)
        # every other layer stays float (non-INT8 layers and any the tuning left out)
        ignored = [n.name for n in proto.graph.node
                   if n.op_type in _TUNED_ONNX and n.name not in int8_nodes]
        # table lookups stay float (caloforge.ovgraph.calibrate: NNCF stores a Gather's
        # constant table in 8 bits per row, which empties the library's small layers)
        ignored += [n.name for n in proto.graph.node if n.op_type == "Gather"]
        if unmapped:
            return None, f"not written: no ONNX node for layer(s) {unmapped}"
        quantized = nncf.quantize(
            proto, nncf.Dataset(list(calibration)), subset_size=len(calibration),
            ignored_scope=nncf.IgnoredScope(names=ignored, validate=False),
            **nncf_arguments(config.params),
        )
        prune_qdq(quantized, int8_nodes)
        with atomic_path(output) as tmp:
            onnx.save(quantized, str(tmp))
    except Exception as exc:  # NNCF/ONNX failures must not lose the tuned IR
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        log.warning("QDQ ONNX export failed: %s", first)
        return None, f"not written: NNCF ONNX export failed ({first[:200]})"
    n_float = len(config.precisions) - len(config.layers_in(INT8))
    note = f" ({n_float} non-INT8 layer(s) kept float; BF16 has no QDQ form)" if n_float else ""
    return output, f"written{note}"
