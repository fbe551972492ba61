"""ONNX Runtime backend (FP32, CPU execution provider): portability check and a second
opinion; 3D convolutions are slow on it (see ``docs/runtime.md``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from caloforge.errors import UserError
from caloforge.runtime.backend import (
    CompiledGenerator,
    ExecConfig,
    as_inputs,
    check_precision,
    register_backend,
)


class ORTGenerator(CompiledGenerator):
    backend = "onnxruntime"

    def __init__(self, session: Any, config: ExecConfig, info: dict[str, Any]) -> None:
        self.session = session
        self.precision = "fp32"
        self.config = config
        self.info = info

    def infer(self, z: np.ndarray, energy: np.ndarray) -> np.ndarray:
        z, energy = as_inputs(z, energy)
        return self.session.run(["showers"], {"z": z, "energy": energy})[0]


class ONNXRuntimeBackend:
    name = "onnxruntime"
    precisions: tuple[str, ...] = ("fp32",)

    def compile(self, model: str | os.PathLike[str] | None = None, precision: str | None = "fp32",
                config: ExecConfig | None = None, **options: Any) -> ORTGenerator:
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError("the onnxruntime backend needs: pip install 'caloforge[onnxruntime]'"
                            ) from None
        from caloforge.gan.shipped import default_onnx_path
        from caloforge.runtime.modelfile import check_interface, read_ov_model

        check_precision(self, precision or "fp32")
        config = config or ExecConfig()
        if config.streams != 1:
            raise UserError(f"streams {config.streams}: the onnxruntime backend runs one stream "
                            "(streams=1)")
        p = default_onnx_path() if model is None else Path(model)
        if p.suffix.lower() != ".onnx":
            raise UserError(f"{p}: the onnxruntime backend reads ONNX files (.onnx)")
        loaded = read_ov_model(p)  # same checks (existence, validity, interface) as OpenVINO
        check_interface(loaded.model, str(p))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = config.resolved_threads()
        opts.inter_op_num_threads = 1
        try:
            sess = ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise UserError(f"{p}: onnxruntime cannot load the model ({exc})") from None
        gen = ORTGenerator(sess, config, {"model": str(p), "architecture": loaded.architecture})
        gen.latent_dim = loaded.latent_dim  # the graph's own (200: 3DGAN; 3151/3153: phase)
        if loaded.cell_threshold_gev is not None:
            gen.cell_threshold_gev = loaded.cell_threshold_gev
        return gen


register_backend("onnxruntime", ONNXRuntimeBackend)
