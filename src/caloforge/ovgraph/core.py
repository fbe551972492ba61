"""One process-wide ``openvino.Core``; read a model, compile it with a precision hint, and read
back what the CPU plugin actually runs.

The precision hint: OpenVINO's CPU plugin defaults to bf16 on CPUs with AMX/AVX512-BF16, so
every compile here sets ``INFERENCE_PRECISION_HINT`` explicitly. A model may carry its own hint
(``runtime_options/INFERENCE_PRECISION_HINT`` in its rt_info, written by
:func:`set_precision_hint`; a tuned IR with BF16 layers says ``bf16``) and
:func:`compile_model` uses it when no hint is given.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from caloforge.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import openvino as ov

PRECISION_HINT_PATH = ["runtime_options", "INFERENCE_PRECISION_HINT"]
"""Where a model's own inference precision hint is stored in its rt_info."""
HINTS = ("f32", "bf16")

_CORE: ov.Core | None = None
_CORE_LOCK = threading.Lock()


def core() -> ov.Core:
    """The process-wide ``openvino.Core`` (created on first use)."""
    global _CORE
    with _CORE_LOCK:
        if _CORE is None:
            import openvino as ov

            _CORE = ov.Core()
        return _CORE


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines()
             if ln.strip() and not ln.startswith("Exception from ")]
    # OpenVINO messages start with a source location; the last line is the useful one.
    return (lines[-1] if lines else type(exc).__name__)[:300]


def read_model(path: str | os.PathLike[str]) -> ov.Model:
    """Read an ONNX model or OpenVINO IR (.xml + .bin), with one clear UserError on failure."""
    p = str(path)
    if not p.lower().endswith(".xml"):
        # check with the ONNX frontend alone: core.read_model would try every frontend on a bad
        # file (the TensorFlow one logs parse errors to stderr) and say only "Exception from ..."
        from openvino.frontend import FrontEndManager

        onnx_fe = FrontEndManager().load_by_framework("onnx")
        if not onnx_fe.supported(p):
            raise UserError(f"{p}: not a valid ONNX model (or OpenVINO IR .xml)")
    try:
        return core().read_model(p)
    except Exception as exc:  # OpenVINO raises RuntimeError with a long message
        kind = "OpenVINO IR" if p.lower().endswith(".xml") else "ONNX"
        raise UserError(f"{p}: not a valid {kind} model ({_first_line(exc)})") from None


def precision_hint(model: ov.Model) -> str:
    """The inference precision hint stored in ``model`` (``"f32"`` if none)."""
    try:
        if model.has_rt_info(PRECISION_HINT_PATH):
            return str(model.get_rt_info(PRECISION_HINT_PATH).astype(str))
    except RuntimeError:
        pass
    return "f32"


def set_precision_hint(model: ov.Model, hint: str) -> None:
    """Store ``hint`` (``"f32"`` or ``"bf16"``) in ``model`` so a saved IR says how to compile it."""
    if hint not in HINTS:
        raise ValueError(f"precision hint {hint!r}: expected one of {HINTS}")
    model.set_rt_info(hint, PRECISION_HINT_PATH)


def compile_model(model: ov.Model | str | os.PathLike[str], *, hint: str | None = None,
                  device: str = "CPU", config: Mapping[str, Any] | None = None
                  ) -> ov.CompiledModel:
    """Compile with an explicit precision hint: ``hint``, else the one ``model`` carries
    (:func:`precision_hint`; f32 unless it has BF16 layers). ``config``: further OpenVINO
    properties (streams, threads, ...). A path is read with :func:`read_model` first."""
    import openvino as ov

    if not isinstance(model, ov.Model):
        model = read_model(model)
    props: dict[str, Any] = {"INFERENCE_PRECISION_HINT": hint or precision_hint(model)}
    props.update(config or {})
    return core().compile_model(model, device, props)


def is_quantized(model: ov.Model) -> bool:
    """True when ``model`` carries quantization (FakeQuantize) nodes."""
    return any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())


@dataclass(frozen=True)
class RuntimeNode:
    """One compute node of a compiled model as the CPU plugin runs it."""

    name: str
    type: str  # runtime layer type, e.g. Convolution, FullyConnected
    precision: str  # runtime precision as reported, e.g. u8, i8, bf16, f32
    kernel: str  # primitive, e.g. brgconv_avx512_amx_int8 (may be empty)
    original_names: tuple[str, ...] = ()  # the source-graph ops fused into it


COMPUTE_TYPES = frozenset({"Convolution", "FullyConnected", "MatMul", "Deconvolution"})


def _rt(node: ov.Node, key: str) -> str:
    info = node.get_rt_info()
    return str(info[key].astype(str)) if key in info else ""


def runtime_precisions(compiled: ov.CompiledModel, *, compute_only: bool = True
                       ) -> list[RuntimeNode]:
    """The nodes of ``compiled``'s runtime graph (convolutions and matrix products only, unless
    ``compute_only=False``), in execution order, with their runtime precision and kernel."""
    rows = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        kind = _rt(op, "layerType")
        if compute_only and kind not in COMPUTE_TYPES:
            continue
        names = tuple(n for n in _rt(op, "originalLayersNames").split(",") if n)
        rows.append(RuntimeNode(op.get_friendly_name(), kind, _rt(op, "runtimePrecision"),
                                _rt(op, "primitiveType"), names))
    return rows
