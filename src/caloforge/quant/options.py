"""The knobs of a tuning run, in one object (:class:`TuneOptions`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from caloforge.ovgraph import BF16_PARITY_MAX_REL_L2


@dataclass(frozen=True)
class TuneOptions:
    """How :func:`caloforge.quant.tune` searches (every field has a default).

    resume: continue the history in ``output_dir``; configurations already evaluated are not
        re-run. Without it an existing history is an error (nothing is overwritten).
    timeout_s, max_trials: stop the search after this wall time / number of metric evaluations
        (history included); the best so far is kept and reported.
    precisions: allowed layer precisions (default: int8 + fp32, and bf16 where the CPU has it).
    params: quantization parameters (:mod:`caloforge.quant.params`): one set (a mapping), or
        the candidate sets to try (a sequence; the strategy keeps the one whose all-INT8 model
        scores best). Default: :data:`~caloforge.quant.params.DEFAULT_PARAM_SETS`.
    layers: restrict tuning to these layer names (the others stay FP32).
    latency_batch: batch used for timing (default: the calibration samples' batch).
    latency_margin: latencies closer than this fraction count as equal (noise); then the higher
        INT8 FLOPs share wins.
    latency_time_s: minimum timing per latency measurement (>= 5 runs in any case).
    bf16_parity: a configuration with BF16 layers passes only if the relative L2 distance of its
        outputs (on the probe inputs) to those of the same configuration with those layers in
        FP32 is at most this (besides meeting the criterion); the runtime's rule,
        :data:`caloforge.ovgraph.BF16_PARITY_MAX_REL_L2`.
    probe_samples: calibration samples used for the cheap output-error probes.
    device, compile_config: OpenVINO device and extra compile properties.
    confirm_top: at the end, re-time this many of the fastest passing candidates and FP32 in
        rotation (same process, interleaved, medians) and re-pick the fastest (0: skip).
    export_qdq: write ``model_qdq.onnx`` (if feasible). qdq_source: the ONNX file ``model`` was
        made from, when ``model`` is an in-memory (e.g. rewritten) ``ov.Model``; layers are
        mapped back to its nodes by name.
    report: write ``report.md`` / ``report.png``.
    model_sha256: identity of an in-memory ``model`` recorded in the history (e.g. the source
        file's checksum plus the rewrite applied), so ``resume`` can detect a changed model.
    progress: called with one line per step (default: the ``logging`` INFO level).
    """

    resume: bool = False
    timeout_s: float | None = None
    max_trials: int | None = None
    precisions: Sequence[str] | None = None
    params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None
    layers: Sequence[str] | None = None
    latency_batch: int | None = None
    latency_margin: float = 0.05
    latency_time_s: float = 0.25
    bf16_parity: float = BF16_PARITY_MAX_REL_L2
    probe_samples: int = 4
    device: str = "CPU"
    compile_config: Mapping[str, Any] | None = None
    confirm_top: int = 4
    export_qdq: bool = True
    qdq_source: str | os.PathLike[str] | None = None
    report: bool = True
    model_sha256: str | None = None
    progress: Callable[[str], None] | None = field(default=None, compare=False)

    @classmethod
    def names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls))
