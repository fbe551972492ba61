"""Inference runtime: backends (OpenVINO, PyTorch eager reference, ONNX Runtime), precisions
(fp32 / bf16 / int8), multistream execution, reproducible generation, model files, the bench.

Main entry points::

    compile_model(model=None, precision="fp32", backend="openvino", streams=1 | "auto",
                  threads=None, batch_size=None) -> CompiledGenerator   (.infer / .run)
    measure_throughput(gen, seconds=2.0) -> Throughput
    generate(energies, model=None, precision="fp32", streams="auto", seed=0) -> images
    generate_to_file(path, n, energies=... | energy_range=..., ...)
    quantize_int8(model, Calibration(...)) -> openvino.Model
    load_model(path) / save_model(model, path, precision=...)      (manifest-checked)

``pad_small_convolutions`` and ``runtime_precisions`` are :mod:`caloforge.ovgraph`'s.
OpenVINO is imported on first use, not by importing this package.
"""

from caloforge.ovgraph import pad_small_convolutions, runtime_precisions
from caloforge.runtime import onnxruntime_backend as _ort  # noqa: F401  (registers)
from caloforge.runtime import openvino_backend as _ov  # noqa: F401  (registers)
from caloforge.runtime import torch_backend as _pt  # noqa: F401  (registers)
from caloforge.runtime.backend import (
    PRECISIONS,
    Backend,
    CompiledGenerator,
    ExecConfig,
    available_backends,
    cpu_count,
    get_backend,
    register_backend,
)
from caloforge.runtime.engine import Throughput, compile_model, measure_throughput
from caloforge.runtime.generate import (
    ExtrapolationWarning,
    check_energies,
    generate,
    generate_to_file,
)
from caloforge.runtime.modelfile import LoadedModel, read_ov_model, save_model
from caloforge.runtime.noise import latent_noise, uniform_energies
from caloforge.runtime.openvino_backend import load_generator
from caloforge.runtime.quantize import Calibration, calibration_inputs, quantize_int8

load_model = read_ov_model

__all__ = [
    "PRECISIONS",
    "Backend",
    "Calibration",
    "CompiledGenerator",
    "ExecConfig",
    "ExtrapolationWarning",
    "LoadedModel",
    "Throughput",
    "available_backends",
    "calibration_inputs",
    "check_energies",
    "compile_model",
    "cpu_count",
    "generate",
    "generate_to_file",
    "get_backend",
    "latent_noise",
    "load_generator",
    "load_model",
    "measure_throughput",
    "pad_small_convolutions",
    "quantize_int8",
    "read_ov_model",
    "register_backend",
    "runtime_precisions",
    "save_model",
    "uniform_energies",
]
