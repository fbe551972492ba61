"""Layer lookup: which ops of a model have an INT8 kernel on the CPU, and how heavy each is.

A *layer* is a compute operation that has an INT8 kernel on the CPU (convolutions and matrix
products). Everything else (activations, normalisations, reshapes) follows its neighbours: the
OpenVINO CPU plugin fuses it into the layer's kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from caloforge.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import openvino as ov

QUANTIZABLE_TYPES = frozenset({
    "Convolution", "GroupConvolution", "ConvolutionBackpropData",
    "GroupConvolutionBackpropData", "MatMul",
})
"""OpenVINO op types given a precision (ONNX Conv/ConvTranspose/MatMul/Gemm import to these)."""


@dataclass(frozen=True)
class Layer:
    """A tunable layer: OpenVINO friendly name, op type and cost in FLOPs per sample (2 x MACs)."""

    name: str
    op_type: str
    flops: float


def _dims(pshape: ov.PartialShape) -> list[int]:
    """Static dimensions; a dynamic one (the batch, usually) counts as 1."""
    return [d.get_length() if d.is_static else 1 for d in pshape]


def _prod(values: list[int]) -> float:
    return float(math.prod(values)) if values else 1.0


def layer_flops(node: ov.Node) -> float:
    """FLOPs (2 x multiply-accumulates) of one sample through ``node`` (batch counted as 1)."""
    kind = node.get_type_name()
    try:
        out = _dims(node.get_output_partial_shape(0))
        inp = _dims(node.get_input_partial_shape(0))
        w = _dims(node.get_input_partial_shape(1))
    except RuntimeError:  # dynamic rank
        return 0.0
    if kind == "Convolution":
        macs = _prod(out[1:]) * _prod(w[1:])
    elif kind == "GroupConvolution":
        macs = _prod(out[1:]) * _prod(w[2:])
    elif kind == "ConvolutionBackpropData":
        macs = _prod(inp[1:]) * _prod(w[1:])
    elif kind == "GroupConvolutionBackpropData":
        macs = _prod(inp[1:]) * _prod(w[2:])
    elif kind == "MatMul":
        attrs = node.get_attributes()
        k = inp[-2] if attrs.get("transpose_a") and len(inp) >= 2 else inp[-1]
        batch_out = out[1:] if len(out) > 2 else out
        macs = _prod(batch_out) * k
    else:
        return 0.0
    return 2.0 * macs


def find_layers(model: ov.Model) -> list[Layer]:
    """The quantizable layers of ``model`` in topological (network) order.

    A MatMul between two activations (no constant operand) is included too: NNCF quantizes both
    inputs. Layers whose names repeat are skipped (names are the search keys).
    """
    layers: list[Layer] = []
    seen: set[str] = set()
    for node in model.get_ordered_ops():
        if node.get_type_name() not in QUANTIZABLE_TYPES:
            continue
        name = node.get_friendly_name()
        if name in seen:
            continue
        seen.add(name)
        layers.append(Layer(name, node.get_type_name(), layer_flops(node)))
    return layers


def nodes_by_name(model: ov.Model) -> dict[str, ov.Node]:
    """Every op of ``model`` by friendly name."""
    return {op.get_friendly_name(): op for op in model.get_ops()}


def find_node(model: ov.Model, name: str) -> ov.Node:
    """The op of ``model`` called ``name`` (UserError naming ``name`` when there is none)."""
    for op in model.get_ops():
        if op.get_friendly_name() == name:
            return op
    raise UserError(f"layer {name!r}: not in the model")


def available_precisions(device: str = "CPU") -> tuple[str, ...]:
    """Precisions this CPU runs natively: always int8 and fp32, bf16 where the plugin reports it."""
    from caloforge.ovgraph.core import core
    from caloforge.ovgraph.precisions import BF16, FP32, INT8

    caps = set(core().get_property(device, "OPTIMIZATION_CAPABILITIES"))
    return (INT8, BF16, FP32) if "BF16" in caps else (INT8, FP32)
