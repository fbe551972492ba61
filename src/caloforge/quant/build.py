"""Turn a :class:`~caloforge.quant.config.Config` into an OpenVINO model and compile it.

How a configuration is realised (NNCF and OpenVINO are the primitives, the recipe is ours):

1. NNCF calibrates the whole model once per set of quantization parameters
   (``nncf.quantize`` on the OpenVINO model, weights kept as FP32 constants behind
   FakeQuantize nodes so they can be restored). The result is cached.
2. For a configuration, the calibrated model is cloned and only the FakeQuantize nodes that feed
   an INT8 layer (its activation input, reached through quantization-agnostic ops such as
   Reshape/Pad/Interpolate, and its weights) are kept; every other one is removed: those of
   non-INT8 layers, and those NNCF put in front of ops that are not tuned (elementwise ops,
   BatchNorm, the model inputs/outputs). A bias NNCF corrected is restored for non-INT8 layers.
   This is equivalent to quantizing with the non-INT8 layers in NNCF's ignored scope, without
   repeating the calibration for every trial; the all-FP32 configuration is the FP32 model.
3. BF16 layers: the model is compiled with ``INFERENCE_PRECISION_HINT=bf16`` and every node that
   does not belong to a BF16 layer is marked ``disable_fp16_compression`` (the OpenVINO runtime
   attribute the CPU plugin honours to keep a node in f32 under a bf16/f16 hint). Without a
   BF16 layer the model is compiled with ``f32`` (the plugin would otherwise default to bf16 on
   AMX machines). The hint is also stored in the model (``runtime_options``) so a saved IR says
   how it must be compiled; :func:`compile_model` reads it back.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import openvino as ov

from caloforge.errors import UserError
from caloforge.quant.config import BF16, INT8, Config

log = logging.getLogger(__name__)

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
PRECISION_HINT_PATH = ["runtime_options", "INFERENCE_PRECISION_HINT"]


def read_model(path: str, core: ov.Core | None = None) -> ov.Model:
    """Read an ONNX model or OpenVINO IR, with one clear error on failure."""
    if not str(path).lower().endswith(".xml"):
        # check with the ONNX frontend alone: core.read_model would try every frontend on a bad
        # file (the TensorFlow one logs parse errors to stderr) and say only "Exception from ..."
        from openvino.frontend import FrontEndManager

        onnx_fe = FrontEndManager().load_by_framework("onnx")
        if not onnx_fe.supported(str(path)):
            raise UserError(f"{path}: not a valid ONNX model (or OpenVINO IR .xml)")
    core = core or ov.Core()
    try:
        return core.read_model(str(path))
    except Exception as exc:  # OpenVINO raises RuntimeError with a long message
        lines = [ln.strip() for ln in str(exc).splitlines()
                 if ln.strip() and not ln.startswith("Exception from ")]
        why = lines[0] if lines else type(exc).__name__
        raise UserError(f"{path}: cannot read model ({why})") from None


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


def _input_quantizer(layer: ov.Node, port: int) -> tuple[ov.Node, list[ov.Node]] | None:
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


def apply_precisions(model: ov.Model, config: Config) -> list[str]:
    """Keep the FakeQuantize nodes that feed INT8 layers, remove all others (in place).

    NNCF also quantizes inputs of ops that are not tuned (elementwise, BatchNorm, the model
    output...); those quantizers belong to no INT8 layer and are removed, so only the tuned
    layers run INT8 and the all-FP32 configuration is the FP32 model. Returns warnings.
    """
    by_name = {op.get_friendly_name(): op for op in model.get_ops()}
    missing = [name for name in config.precisions if name not in by_name]
    if missing:
        raise UserError(f"layer(s) {missing} not in the model")
    owners: dict[str, list[tuple[ov.Node, int, list[ov.Node], bool]]] = {}
    for name, precision in config.precisions.items():
        layer = by_name[name]
        for port in range(layer.get_input_size()):
            found = _input_quantizer(layer, port)
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


def _restore_bias(layer: ov.Node, changed: Mapping[str, np.ndarray]) -> None:
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


class Builder:
    """Builds and compiles candidate models of one FP32 model for given calibration data.

    ``calibration`` is a list of input dictionaries (input name -> array), each one model call.
    """

    def __init__(self, model: ov.Model, calibration: Sequence[Mapping[str, np.ndarray]],
                 core: ov.Core | None = None, device: str = "CPU",
                 compile_config: Mapping[str, Any] | None = None,
                 model_type: Any = None) -> None:
        if not calibration:
            raise UserError("calibration set is empty")
        self.model = model
        self.calibration = list(calibration)
        self.core = core or ov.Core()
        self.device = device
        self.compile_config = dict(compile_config or {})
        self.model_type = model_type
        self._calibrated: dict[str, tuple[ov.Model, dict[str, np.ndarray]]] = {}

    # -- calibration (once per parameter set) ---------------------------------------------------
    def calibrated(self, params: Mapping[str, Any]) -> tuple[ov.Model, dict[str, np.ndarray]]:
        """The fully quantized model for ``params`` and the constants NNCF changed (name -> original)."""
        key = repr(sorted(params.items()))
        if key not in self._calibrated:
            self._calibrated[key] = self._quantize_all(params)
        return self._calibrated[key]

    def _quantize_all(self, params: Mapping[str, Any]) -> tuple[ov.Model, dict[str, np.ndarray]]:
        import nncf

        from caloforge.quant.params import nncf_arguments

        quantized = nncf.quantize(
            self.model.clone(), nncf.Dataset(self.calibration), subset_size=len(self.calibration),
            model_type=self.model_type, **nncf_arguments(params, keep_weights=True),
        )
        original = {op.get_friendly_name(): op for op in self.model.get_ops()
                    if op.get_type_name() == "Constant"}
        changed: dict[str, np.ndarray] = {}
        for op in quantized.get_ops():
            name = op.get_friendly_name()
            if op.get_type_name() == "Constant" and name in original:
                before = original[name].get_data()
                after = op.get_data()
                if before.shape != after.shape or not np.array_equal(before, after):
                    changed[name] = np.array(before, copy=True)
        return quantized, changed

    # -- one candidate --------------------------------------------------------------------------
    def build(self, config: Config) -> ov.Model:
        """An ``ov.Model`` realising ``config`` (FakeQuantize for INT8 layers, marks for BF16)."""
        base, changed = self.calibrated(config.params)
        model = base.clone()
        for note in apply_precisions(model, config):
            log.warning("%s", note)
        by_name = {op.get_friendly_name(): op for op in model.get_ops()}
        for name, precision in config.precisions.items():
            if precision != INT8:
                _restore_bias(by_name[name], changed)
        model.validate_nodes_and_infer_types()
        bf16 = config.layers_in(BF16)
        if bf16:
            mark_bf16_layers(model, bf16)
        model.set_rt_info("bf16" if bf16 else "f32", PRECISION_HINT_PATH)
        return model

    def compile(self, model: ov.Model, extra: Mapping[str, Any] | None = None) -> ov.CompiledModel:
        return compile_model(model, self.core, self.device, {**self.compile_config, **(extra or {})})

    def compile_fp32(self) -> ov.CompiledModel:
        model = self.model.clone()
        model.set_rt_info("f32", PRECISION_HINT_PATH)
        return self.compile(model)


def mark_bf16_layers(model: ov.Model, bf16_layers: Sequence[str]) -> None:
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


def precision_hint(model: ov.Model) -> str:
    """The inference precision stored in ``model`` by :meth:`Builder.build` (``"f32"`` if none)."""
    try:
        if model.has_rt_info(PRECISION_HINT_PATH):
            return str(model.get_rt_info(PRECISION_HINT_PATH).astype(str))
    except RuntimeError:
        pass
    return "f32"


def compile_model(model: ov.Model | str, core: ov.Core | None = None, device: str = "CPU",
                  config: Mapping[str, Any] | None = None) -> ov.CompiledModel:
    """Compile with the precision hint the model carries (f32 unless it has BF16 layers).

    Use this (not ``core.compile_model`` with defaults) for a tuned IR: the CPU plugin's default
    on AMX machines is bf16 everywhere, which is wrong for some layers.
    """
    core = core or ov.Core()
    if not isinstance(model, ov.Model):
        model = read_model(str(model), core)
    props: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision_hint(model)}
    props.update(config or {})
    return core.compile_model(model, device, props)
