"""Per-layer precision marking: from a mapping layer name -> ``"int8" | "bf16" | "fp32"`` to an
OpenVINO model that runs each layer in that precision.

1. INT8: on a calibrated model (FakeQuantize nodes everywhere NNCF put them,
   :func:`caloforge.ovgraph.calibrate.calibrate`) only the FakeQuantize nodes that feed an INT8
   layer (its activation input, reached through quantization-agnostic ops such as
   Reshape/Pad/Interpolate, and its weights) are kept; every other one is removed: those of
   non-INT8 layers, and those NNCF put in front of ops that have no INT8 kernel (elementwise
   ops, BatchNorm, the model inputs/outputs). A bias NNCF corrected is restored for non-INT8
   layers. Equivalent to quantizing with the non-INT8 layers in NNCF's ignored scope, without
   repeating the calibration.
2. BF16: every node that does not belong to a BF16 layer is marked ``disable_fp16_compression``
   (the OpenVINO runtime attribute the CPU plugin honours to keep a node in f32 under a bf16/f16
   hint), and the model's precision hint is set to ``bf16``; without a BF16 layer it is ``f32``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from caloforge.errors import UserError
from caloforge.ovgraph.core import set_precision_hint
from caloforge.ovgraph.layers import nodes_by_name

if TYPE_CHECKING:  # pragma: no cover
    import openvino as ov

log = logging.getLogger(__name__)

INT8 = "int8"
BF16 = "bf16"
FP32 = "fp32"
PRECISIONS = (INT8, BF16, FP32)
"""Precisions a layer can be given, fastest first."""

BF16_PARITY_MAX_REL_L2 = 0.05
"""BF16 parity (the one definition, used by the runtime and the tuner): a model with BF16 layers
is trusted only if the relative L2 distance ``|y - y_ref| / |y_ref|`` of its outputs to those of
the *same* model with those layers in f32, on the same inputs, is at most this. Measured ~0.007
on the shipped generator; the AMX bf16 first-convolution bug gives ~0.95."""

PASS_THROUGH = frozenset({
    "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Pad", "Interpolate", "MaxPool",
    "StridedSlice", "Slice", "DepthToSpace", "SpaceToDepth",
})
"""Quantization-agnostic ops (data on input 0) NNCF may put between a FakeQuantize and the layer
it feeds: the quantized tensor flows through them unchanged in precision."""
_CLONABLE = frozenset({"Reshape", "Transpose", "Squeeze", "Unsqueeze"})
_BIAS_PATH = frozenset({"Reshape", "Convert", "Unsqueeze", "Broadcast", "Squeeze"})
KEEP_F32 = "disable_fp16_compression_0"
"""rt_info key of ``ov::DisableFP16Compression`` (keeps a node in f32 under a bf16/f16 hint)."""


def rel_l2(outputs: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> float:
    """Relative L2 distance of ``outputs`` to ``reference`` (lists of arrays, taken together)."""
    num = sum(float(np.sum((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
              for a, b in zip(outputs, reference, strict=True))
    den = sum(float(np.sum(np.asarray(b, np.float64) ** 2)) for b in reference)
    return math.sqrt(num / den) if den > 0 else math.sqrt(num)


def bf16_parity_ok(error: float) -> bool:
    """``error``: :func:`rel_l2` of a BF16 model's outputs to the same model's in f32."""
    return bool(error <= BF16_PARITY_MAX_REL_L2)


def _clone_pass_through(node: ov.Node, source: ov.Output) -> ov.Output | None:
    """A copy of shape-only ``node`` reading ``source`` instead of its first input."""
    from openvino import opset13 as ops

    kind = node.get_type_name()
    rest = [node.input_value(i) for i in range(1, node.get_input_size())]
    if kind == "Reshape":
        new = ops.reshape(source, rest[0], bool(node.get_attributes().get("special_zero", False)))
    elif kind == "Transpose":
        new = ops.transpose(source, rest[0])
    elif kind == "Squeeze":
        new = ops.squeeze(source, rest[0]) if rest else ops.squeeze(source)
    elif kind == "Unsqueeze":
        new = ops.unsqueeze(source, rest[0])
    else:  # pragma: no cover - PASS_THROUGH lists only the above
        return None
    new.set_friendly_name(node.get_friendly_name() + "/float")
    return new.output(0)


def input_quantizer(layer: ov.Node, port: int) -> tuple[ov.Node, list[ov.Node]] | None:
    """The FakeQuantize feeding ``layer``'s input ``port`` and the agnostic ops in between."""
    path: list[ov.Node] = []
    node = layer.input_value(port).get_node()
    while node.get_type_name() in PASS_THROUGH and len(path) < 8:
        path.append(node)
        node = node.input_value(0).get_node()
    if node.get_type_name() != "FakeQuantize":
        return None
    return node, path


def _float_path(layer: ov.Node, port: int, fq: ov.Node, path: list[ov.Node]) -> bool:
    """Feed ``layer``'s ``port`` from before ``fq`` while other consumers keep it (clones ``path``)."""
    source = fq.input_value(0)
    for hop in reversed(path):
        if hop.get_type_name() not in _CLONABLE:
            return False
        cloned = _clone_pass_through(hop, source)
        if cloned is None:
            return False
        source = cloned
    layer.input(port).replace_source_output(source)
    return True


def keep_int8_quantizers(model: ov.Model, precisions: Mapping[str, str]) -> list[str]:
    """Keep the FakeQuantize nodes that feed the layers ``precisions`` sets to INT8, remove all
    others (in place). Returns notes (quantizers that could not be removed)."""
    by_name = nodes_by_name(model)
    missing = [name for name in precisions if name not in by_name]
    if missing:
        raise UserError(f"layer(s) {missing} not in the model")
    owners: dict[str, list[tuple[ov.Node, int, list[ov.Node], bool]]] = {}
    for name, precision in precisions.items():
        layer = by_name[name]
        for port in range(layer.get_input_size()):
            found = input_quantizer(layer, port)
            if found is not None:
                fq, path = found
                owners.setdefault(fq.get_friendly_name(), []).append(
                    (layer, port, path, precision == INT8))
    notes: list[str] = []
    for fq in [op for op in model.get_ops() if op.get_type_name() == "FakeQuantize"]:
        users = owners.get(fq.get_friendly_name(), [])
        if not any(is_int8 for *_, is_int8 in users):
            fq.output(0).replace(fq.input_value(0))  # nobody INT8 needs it
            continue
        for layer, port, path, is_int8 in users:
            if not is_int8 and not _float_path(layer, port, fq, path):
                notes.append(f"{layer.get_friendly_name()}: input {port} shares a quantizer with "
                             "an INT8 layer through an op that cannot be duplicated; it stays quantized")
    return notes


def restore_bias(layer: ov.Node, changed: Mapping[str, np.ndarray]) -> None:
    """Put back the original value of a bias that NNCF's bias correction changed for ``layer``."""
    from openvino import opset13 as ops

    for target in layer.output(0).get_target_inputs():
        consumer = target.get_node()
        if consumer.get_type_name() not in {"Add", "Subtract", "Multiply"}:
            continue
        for i in range(consumer.get_input_size()):
            node = consumer.input_value(i).get_node()
            owner, port = consumer, i
            while node.get_type_name() in _BIAS_PATH:
                owner, port = node, 0
                node = node.input_value(0).get_node()
            name = node.get_friendly_name()
            if node.get_type_name() == "Constant" and name in changed:
                const = ops.constant(changed[name])
                const.set_friendly_name(name + "/original")
                owner.input(port).replace_source_output(const.output(0))


def mark_bf16_layers(model: ov.Model, bf16_layers: Iterable[str]) -> None:
    """Mark every node except the ``bf16_layers`` (and their weight paths) to stay f32.

    The weights of a BF16 layer (the constant and any FakeQuantize/Convert in front of it) are
    left unmarked so the plugin can convert them.
    """
    wanted = set(bf16_layers)
    free: set[str] = set()
    for op in model.get_ops():
        if op.get_friendly_name() in wanted:
            free.add(op.get_friendly_name())
            for port in range(1, op.get_input_size()):
                node = op.input_value(port).get_node()
                while node.get_type_name() in {"Constant", "Convert", "FakeQuantize", "Reshape"}:
                    free.add(node.get_friendly_name())
                    if node.get_type_name() == "Constant" or node.get_input_size() == 0:
                        break
                    node = node.input_value(0).get_node()
    for op in model.get_ops():
        rt = op.get_rt_info()
        if op.get_friendly_name() in free:
            if KEEP_F32 in rt:
                del rt[KEEP_F32]
        else:
            rt[KEEP_F32] = ""


def mark_precisions(model: ov.Model, precisions: Mapping[str, str],
                    changed: Mapping[str, np.ndarray] | None = None) -> list[str]:
    """Realise ``precisions`` (layer name -> int8/bf16/fp32) on a calibrated ``model``, in
    place: INT8 quantizers kept, others removed, NNCF's changed biases (``changed``: constant
    name -> original value) restored for non-INT8 layers, BF16 marks and the precision hint
    set. Layers not named keep no quantizer and run f32. Returns notes."""
    bad = {k: v for k, v in precisions.items() if v not in PRECISIONS}
    if bad:
        raise ValueError(f"unknown precision(s) {bad}; expected one of {PRECISIONS}")
    notes = keep_int8_quantizers(model, precisions)
    for note in notes:
        log.warning("%s", note)
    if changed:
        by_name = nodes_by_name(model)
        for name, precision in precisions.items():
            if precision != INT8:
                restore_bias(by_name[name], changed)
    model.validate_nodes_and_infer_types()
    bf16 = sorted(name for name, p in precisions.items() if p == BF16)
    if bf16:
        mark_bf16_layers(model, bf16)
    set_precision_hint(model, "bf16" if bf16 else "f32")
    return notes
