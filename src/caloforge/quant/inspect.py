"""What actually runs: per-layer precision read from the compiled model's runtime graph.

A layer marked INT8 can silently run in f32 (no INT8 kernel, a failed fusion), and a bf16 hint
can be ignored on a CPU without BF16; so the report trusts the runtime graph, not the request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import openvino as ov

from caloforge.ovgraph import runtime_precisions
from caloforge.quant.config import BF16, FP32, INT8
from caloforge.quant.space import Layer

_RUNTIME_TO_PRECISION = {"u8": INT8, "i8": INT8, "bf16": BF16, "f32": FP32, "f16": "fp16"}


@dataclass(frozen=True)
class RuntimeLayer:
    """One tunable layer as the CPU plugin runs it."""

    name: str
    precision: str  # int8 / bf16 / fp32 / fp16 / unknown
    runtime_precision: str  # as reported, e.g. u8, bf16, f32
    layer_type: str  # runtime node type, e.g. Convolution, FullyConnected
    primitive: str  # kernel, e.g. brgconv_avx512_amx_int8 (may be empty)


def _aliases(model: ov.Model | None, layers: Sequence[Layer]) -> dict[str, list[str]]:
    """Names a layer may carry after fusion: its own, then its consumers' along a single chain.

    (An f32 MatMul + bias fuses into a FullyConnected that keeps only the bias Add's name.)
    """
    result = {layer.name: [layer.name] for layer in layers}
    if model is None:
        return result
    by_name = {op.get_friendly_name(): op for op in model.get_ops()}
    for layer in layers:
        node = by_name.get(layer.name)
        for _ in range(3):
            if node is None:
                break
            targets = list(node.output(0).get_target_inputs())
            if len(targets) != 1:
                break
            node = targets[0].get_node()
            result[layer.name].append(node.get_friendly_name())
    return result


def layer_precisions(compiled: ov.CompiledModel, layers: Sequence[Layer],
                     model: ov.Model | None = None) -> dict[str, RuntimeLayer]:
    """Map each layer name to the runtime node that executes it (matched by original names;
    :func:`caloforge.ovgraph.runtime_precisions` lists the runtime nodes).

    ``model`` (the ov.Model that was compiled) lets a layer whose own name disappeared in a
    fusion be found through the ops it was fused with.
    """
    aliases = _aliases(model, layers)
    nodes = runtime_precisions(compiled, compute_only=False)
    result: dict[str, RuntimeLayer] = {}
    for layer in layers:
        found = None
        for alias in aliases[layer.name]:
            prefix = alias + "/"
            found = next((node for node in nodes if any(
                n == alias or n.startswith(prefix) for n in node.original_names)), None)
            if found is not None:
                break
        if found is None:
            result[layer.name] = RuntimeLayer(layer.name, "unknown", "", "", "")
            continue
        rp = found.precision.lower()
        result[layer.name] = RuntimeLayer(
            layer.name, _RUNTIME_TO_PRECISION.get(rp, "unknown"), rp, found.type, found.kernel)
    return result


def int8_flops_share(layers: Sequence[Layer], precisions: dict[str, str]) -> float:
    """Share (0..1) of the tunable layers' FLOPs whose precision is INT8."""
    total = sum(layer.flops for layer in layers)
    if total <= 0:
        return 0.0
    return sum(layer.flops for layer in layers if precisions.get(layer.name) == INT8) / total
