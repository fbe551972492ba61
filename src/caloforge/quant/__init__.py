"""Accuracy-driven mixed-precision tuning (INT8 / BF16 / FP32 per layer) of ONNX models.

Library entry point: :func:`tune`. Example::

    from caloforge.quant import Criterion, tune
    result = tune("model.onnx", calibration=[{"x": batch} for batch in batches],
                  evaluate=lambda compiled: my_metric(compiled({"x": x_eval})[0]),
                  criterion=Criterion(tolerance=0.01), strategy="ranked", output_dir="tuned")
    print(result.summary())

See docs/quantization.md.
"""

from caloforge.quant.build import compile_model
from caloforge.quant.config import BF16, FP32, INT8, Config
from caloforge.quant.history import read_history
from caloforge.quant.objective import Criterion
from caloforge.quant.strategies import DEFAULT_STRATEGY, Strategy, available, register
from caloforge.quant.tuner import TrialRecord, TuningResult, tune

__all__ = [
    "BF16", "DEFAULT_STRATEGY", "FP32", "INT8", "Config", "Criterion", "Strategy", "TrialRecord",
    "TuningResult", "available", "compile_model", "read_history", "register", "tune",
]
