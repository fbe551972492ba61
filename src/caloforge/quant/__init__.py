"""Accuracy-driven mixed-precision tuning (INT8 / BF16 / FP32 per layer) of ONNX models.

Library entry point: :func:`tune`. Example::

    from caloforge.quant import Criterion, Metric, tune
    result = tune("model.onnx", calibration=[{"x": batch} for batch in batches],
                  evaluate=lambda compiled: my_metric(compiled({"x": x_eval})[0]),
                  criterion=Criterion(tolerance=0.01), strategy="ranked", output_dir="tuned")
    print(result.summary())
    # several metrics (evaluate returns {"loss": ..., "accuracy": ...}): every one must pass
    criterion = [Metric("loss", 0.01), Metric("accuracy", 0.005, relative=False, direction="higher")]

Parts: ``options`` (:class:`TuneOptions`), ``objective`` (the metric and the :class:`Criterion`),
``session`` (build, measure, cache, best model), ``strategies`` (registry), ``records``
(:class:`TrialRecord`, :class:`TuningResult`), ``history``, ``report``. The OpenVINO graph work
(calibration recipe, precision marking, layer lookup) is :mod:`caloforge.ovgraph`'s; tuning the
3DGAN generator in one call is :func:`caloforge.workflows.tune_generator`. See
docs/quantization.md.
"""

from caloforge.ovgraph import compile_model
from caloforge.quant.config import BF16, FP32, INT8, Config
from caloforge.quant.history import read_history
from caloforge.quant.objective import Criterion, CriterionLike, Evaluate, Metric, Objective
from caloforge.quant.options import TuneOptions
from caloforge.quant.records import TrialRecord, TuningResult
from caloforge.quant.strategies import DEFAULT_STRATEGY, Strategy, available, register
from caloforge.quant.tuner import tune

__all__ = [
    "BF16", "DEFAULT_STRATEGY", "FP32", "INT8", "Config", "Criterion", "CriterionLike", "Evaluate",
    "Metric", "Objective",
    "Strategy", "TrialRecord", "TuneOptions", "TuningResult", "available", "compile_model",
    "read_history", "register", "tune",
]
