"""What a tuning run records: one :class:`TrialRecord` per evaluated configuration (a line of
the history file) and the :class:`TuningResult` of the run."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caloforge.quant.config import Config
from caloforge.quant.objective import Criterion
from caloforge.quant.space import Layer

BASELINE = "baseline"
"""Kind of the FP32 baseline record (strategies' requests are ``trial`` or ``probe``)."""


@dataclass
class TrialRecord:
    """One evaluated configuration (a line of the history file)."""

    kind: str
    key: str
    config: Config
    metric: float | None = None
    passed: bool | None = None
    error: float | None = None
    latency_s: float | None = None
    wall_s: float = 0.0
    elapsed_s: float = 0.0
    note: str = ""
    runtime: dict[str, str] = field(default_factory=dict)  # layer -> runtime precision (trials)
    int8_share: float | None = None  # FLOPs share running INT8 (runtime graph)
    latency_samples: list[float] = field(default_factory=list)  # rotation re-timing (seconds)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "key": self.key, "config": self.config.to_json(),
            "metric": self.metric, "passed": self.passed, "error": self.error,
            "latency_ms": None if self.latency_s is None else self.latency_s * 1e3,
            "wall_s": self.wall_s, "elapsed_s": self.elapsed_s, "note": self.note,
            "runtime": self.runtime, "int8_share": self.int8_share,
            "latency_samples_ms": [v * 1e3 for v in self.latency_samples],
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> TrialRecord:
        lat = obj.get("latency_ms")
        return cls(
            kind=obj["kind"], key=obj["key"], config=Config.from_json(obj["config"]),
            metric=_float(obj.get("metric")), passed=obj.get("passed"), error=_float(obj.get("error")),
            latency_s=None if lat is None else float(lat) / 1e3, wall_s=float(obj.get("wall_s", 0.0)),
            elapsed_s=float(obj.get("elapsed_s", 0.0)), note=obj.get("note", ""),
            runtime=dict(obj.get("runtime") or {}), int8_share=_float(obj.get("int8_share")),
            latency_samples=[float(v) / 1e3 for v in obj.get("latency_samples_ms") or []],
        )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass
class TuningResult:
    """What :func:`tune` found. ``passed`` is False when no candidate met the criterion; the
    saved model is then the best by metric."""

    passed: bool
    best: TrialRecord | None
    baseline_metric: float
    baseline_latency_s: float | None
    criterion: Criterion
    strategy: str
    layers: list[Layer]
    trials: list[TrialRecord]  # metric evaluations, in order (cached ones included)
    probes: list[TrialRecord]
    pareto_front: list[TrialRecord]
    output_dir: Path
    model_path: Path | None
    qdq_onnx_path: Path | None = None
    qdq_status: str = ""
    report_path: Path | None = None
    stop_reason: str = "search finished"
    wall_s: float = 0.0
    evaluations_run: int = 0  # metric evaluations run in this session (not from the history)
    probes_run: int = 0
    batch: int = 1

    @property
    def speedup(self) -> float | None:
        """FP32 latency / tuned latency (same batch, same process), if both were measured."""
        if self.best is None or not self.best.latency_s or not self.baseline_latency_s:
            return None
        return self.baseline_latency_s / self.best.latency_s

    def summary(self) -> str:
        """One line: passed or not, metric, speed-up, INT8 share."""
        if self.best is None:
            return f"no candidate evaluated ({self.stop_reason})"
        speed = f", {self.speedup:.2f}x FP32 throughput" if self.speedup else ""
        share = f", {self.best.int8_share:.0%} of FLOPs in INT8" if self.best.int8_share is not None else ""
        head = "criterion met" if self.passed else "NO configuration met the criterion; saved the best by metric"
        return (f"{head}: metric {self.best.metric:.6g} vs FP32 {self.baseline_metric:.6g} "
                f"({self.criterion.describe()}){speed}{share}; {self.best.config.summary()}")


def pareto_front(trials: Sequence[TrialRecord], criterion: Criterion) -> list[TrialRecord]:
    """Trials not dominated in (metric, latency): no other is at least as good in both and
    better in one. Only trials with a latency count. Sorted by latency."""
    timed = [t for t in trials if t.latency_s is not None and t.metric is not None
             and math.isfinite(t.metric)]
    front = []
    for t in timed:
        dominated = False
        t_metric, t_lat = float(t.metric or math.nan), float(t.latency_s or 0.0)
        for o in timed:
            if o is t:
                continue
            o_metric, o_lat = float(o.metric or math.nan), float(o.latency_s or 0.0)
            metric_ok = not criterion.better(t_metric, o_metric)  # o at least as good
            if metric_ok and o_lat <= t_lat and (
                    criterion.better(o_metric, t_metric) or o_lat < t_lat):
                dominated = True
                break
        if not dominated:
            front.append(t)
    return sorted(front, key=lambda t: t.latency_s or 0.0)


def result_to_json(result: TuningResult) -> dict[str, Any]:
    return {
        "passed": result.passed, "summary": result.summary(), "strategy": result.strategy,
        "criterion": result.criterion.to_json(), "baseline_metric": result.baseline_metric,
        "baseline_latency_ms": None if result.baseline_latency_s is None else result.baseline_latency_s * 1e3,
        "best": None if result.best is None else result.best.to_json(),
        "speedup": result.speedup, "stop_reason": result.stop_reason, "wall_s": result.wall_s,
        "evaluations_run": result.evaluations_run, "probes_run": result.probes_run,
        "trials": len(result.trials), "probes": len(result.probes), "batch": result.batch,
        "model": None if result.model_path is None else result.model_path.name,
        "qdq_onnx": None if result.qdq_onnx_path is None else result.qdq_onnx_path.name,
        "qdq_status": result.qdq_status,
        "pareto_front": [t.key for t in result.pareto_front],
        "layers": [{"name": layer.name, "type": layer.op_type, "flops": layer.flops}
                   for layer in result.layers],
    }
