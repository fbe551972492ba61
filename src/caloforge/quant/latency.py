"""Cheap throughput measurement of a candidate with OpenVINO: fixed batch, short timing, medians."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import openvino as ov


def batched_inputs(sample: Mapping[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    """Repeat one calibration sample along the batch axis to ``batch`` rows."""
    out = {}
    for name, value in sample.items():
        arr = np.asarray(value)
        if arr.ndim == 0:
            out[name] = arr
            continue
        reps = -(-batch // arr.shape[0])
        out[name] = np.concatenate([arr] * reps, axis=0)[:batch]
    return out


def fixed_batch_model(model: ov.Model, inputs: Mapping[str, np.ndarray]) -> ov.Model:
    """A clone of ``model`` reshaped to the static shapes of ``inputs`` (unchanged if it cannot be)."""
    clone = model.clone()
    shapes = {}
    for port in clone.inputs:
        name = port.get_any_name()
        if name in inputs:
            shapes[name] = ov.PartialShape(list(np.asarray(inputs[name]).shape))
    try:
        clone.reshape(shapes)
    except RuntimeError:
        return model
    return clone


def measure_latency(compiled: ov.CompiledModel, inputs: Mapping[str, np.ndarray],
                    min_time_s: float = 0.25, min_runs: int = 5, max_runs: int = 200,
                    clock: Callable[[], float] = time.perf_counter) -> float:
    """Median wall time of one synchronous inference of ``inputs`` (seconds).

    Two warm-up calls, then at least ``min_runs`` timed calls and until ``min_time_s`` has passed.
    """
    request = compiled.create_infer_request()
    feed: dict[Any, np.ndarray] = dict(inputs)
    for _ in range(2):
        request.infer(feed)
    times: list[float] = []
    start = clock()
    while len(times) < max_runs and (len(times) < min_runs or clock() - start < min_time_s):
        t0 = clock()
        request.infer(feed)
        times.append(clock() - t0)
    return float(np.median(times))
