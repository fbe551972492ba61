"""What a tuning run records: one :class:`TrialRecord` per evaluated configuration (a line of
the history file) and the :class:`TuningResult` of the run."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caloforge.quant.config import Config
from caloforge.quant.objective import Criterion, CriterionLike, Metric, metrics_of
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
    metrics: dict[str, float] = field(default_factory=dict)  # every metric of the criterion
    slack: float | None = None  # smallest normalised slack among the metrics (>= 0 passes)
    limiting: str = ""  # the metric holding that slack

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "key": self.key, "config": self.config.to_json(),
            "metric": self.metric, "passed": self.passed, "error": self.error,
            "latency_ms": None if self.latency_s is None else self.latency_s * 1e3,
            "wall_s": self.wall_s, "elapsed_s": self.elapsed_s, "note": self.note,
            "runtime": self.runtime, "int8_share": self.int8_share,
            "latency_samples_ms": [v * 1e3 for v in self.latency_samples],
            "metrics": self.metrics, "slack": self.slack, "limiting": self.limiting,
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
            metrics={str(k): (math.nan if v is None else float(v))
                     for k, v in (obj.get("metrics") or {}).items()},
            slack=_float(obj.get("slack")), limiting=str(obj.get("limiting") or ""),
        )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass
class TuningResult:
    """What :func:`tune` found. ``passed`` is False when no candidate met the criterion; the
    saved model is then the best by metric."""

    passed: bool
    best: TrialRecord | None
    baseline_metric: float  # the first metric's FP32 value
    baseline_latency_s: float | None
    criterion: CriterionLike
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
    baseline_metrics: dict[str, float] = field(default_factory=dict)  # every metric's FP32 value
    limited_by: str = ""  # the metric that stopped the search (see :func:`limited_by`)

    @property
    def metrics(self) -> tuple[Metric, ...]:
        return metrics_of(self.criterion)

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
        metrics = self.metrics
        if len(metrics) == 1:
            what = (f"metric {self.best.metric:.6g} vs FP32 {self.baseline_metric:.6g} "
                    f"({_describe(self.criterion)})")
        else:
            slack = "–" if self.best.slack is None else f"{self.best.slack:.2f}"
            what = (f"{len(metrics)} metrics, smallest normalised slack {slack} "
                    f"({self.best.limiting or '?'})")
        return f"{head}: {what}{speed}{share}; {self.best.config.summary()}"


def _describe(criterion: CriterionLike) -> str:
    describe = getattr(criterion, "describe", None)
    if callable(describe):
        return str(describe())
    m = metrics_of(criterion)[0]
    return f"{m.name} within {m.describe_tolerance()}"


def limited_by(trials: Sequence[TrialRecord], best: TrialRecord | None) -> str:
    """The metric that limited the search: among the rejected trials with a larger INT8 FLOPs
    share than ``best`` (what the search would have preferred), the metric that most often held
    the smallest slack (ties: the one with the worst slack). Empty when nothing faster failed."""
    share = (best.int8_share or 0.0) if best is not None else -1.0
    failed = [t for t in trials if t.passed is False and t.limiting
              and (t.int8_share or 0.0) > share + 1e-9]
    if not failed:
        return ""
    count: dict[str, int] = {}
    worst: dict[str, float] = {}
    for t in failed:
        count[t.limiting] = count.get(t.limiting, 0) + 1
        worst[t.limiting] = min(worst.get(t.limiting, math.inf), t.slack if t.slack is not None
                                else -math.inf)
    return max(count, key=lambda n: (count[n], -worst[n]))


def pareto_front(trials: Sequence[TrialRecord], criterion: CriterionLike) -> list[TrialRecord]:
    """Trials not dominated in (accuracy, latency): no other is at least as good in both and
    better in one. Accuracy is the metric for a one-metric criterion, else the normalised slack
    (higher is better). Only trials with a latency count. Sorted by latency."""
    metrics = metrics_of(criterion)
    single = len(metrics) == 1 and metrics[0].direction != "both"

    def score(t: TrialRecord) -> float:
        if single:
            return float(t.metric if t.metric is not None else math.nan)
        return float(t.slack if t.slack is not None else math.nan)

    def better(a: float, b: float) -> bool:
        return metrics[0].better(a, b) if single else (
            math.isfinite(a) and (not math.isfinite(b) or a > b))

    timed = [t for t in trials if t.latency_s is not None and math.isfinite(score(t))]
    front = []
    for t in timed:
        dominated = False
        t_metric, t_lat = score(t), float(t.latency_s or 0.0)
        for o in timed:
            if o is t:
                continue
            o_metric, o_lat = score(o), float(o.latency_s or 0.0)
            metric_ok = not better(t_metric, o_metric)  # o at least as good
            if metric_ok and o_lat <= t_lat and (
                    better(o_metric, t_metric) or o_lat < t_lat):
                dominated = True
                break
        if not dominated:
            front.append(t)
    return sorted(front, key=lambda t: t.latency_s or 0.0)


def _criterion_json(criterion: CriterionLike) -> object:
    if isinstance(criterion, Criterion):
        return criterion.to_json()
    return {"metrics": [m.to_json() for m in metrics_of(criterion)]}


def result_to_json(result: TuningResult) -> dict[str, Any]:
    return {
        "passed": result.passed, "summary": result.summary(), "strategy": result.strategy,
        "criterion": _criterion_json(result.criterion),
        "baseline_metric": result.baseline_metric, "baseline_metrics": result.baseline_metrics,
        "limited_by": result.limited_by,
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
