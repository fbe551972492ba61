"""The objective: the user's metrics (:data:`Evaluate`) and the accuracy criterion (does every
metric of a candidate stay close enough to the FP32 model's?), combined in :class:`Objective`.

A criterion is one :class:`Metric` or several. Each metric has a name, a direction (lower is
better, higher is better, or two-sided: "within the tolerance of FP32 either way") and a
tolerance (relative to the FP32 value, or absolute in the metric's units). A candidate passes
when every metric passes; its *slack* is the smallest normalised slack among the metrics
(:meth:`Metric.normalised_slack`: 1 = as good as FP32, 0 = on the threshold, < 0 fails), and the
metric holding it is the *limiting* one. :class:`Criterion` is the one-metric form kept for the
single-number metric (``evaluate`` returning a float).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import openvino as ov

LOWER = "lower"
HIGHER = "higher"
TWO_SIDED = "both"
DIRECTIONS = (LOWER, HIGHER, TWO_SIDED)


@dataclass(frozen=True)
class Metric:
    """One metric of a criterion: ``name`` (the key ``evaluate`` returns it under), a
    ``tolerance`` (``relative=True``: a fraction of ``|FP32 value|``; else metric units) and a
    ``direction``: ``"lower"`` (pass when ``value <= FP32 + loss``), ``"higher"``
    (``value >= FP32 - loss``) or ``"both"`` (``|value - FP32| <= loss``). With one-sided
    directions a candidate *better* than FP32 always passes. NaN never passes."""

    name: str
    tolerance: float = 0.01
    relative: bool = True
    direction: str = LOWER

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"metric name must be a non-empty string, got {self.name!r}")
        if not (math.isfinite(self.tolerance)):
            raise ValueError(f"{self.name}: tolerance must be finite, got {self.tolerance}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"{self.name}: direction must be one of {DIRECTIONS}, "
                             f"got {self.direction!r}")

    @property
    def higher_is_better(self) -> bool:
        return self.direction == HIGHER

    def allowed_loss(self, baseline: float) -> float:
        """How far from ``baseline`` a value may be on the bad side, in metric units."""
        return self.tolerance * abs(baseline) if self.relative else self.tolerance

    def threshold(self, baseline: float) -> float:
        """The worst value that still passes (two-sided: the upper one)."""
        loss = self.allowed_loss(baseline)
        return baseline - loss if self.direction == HIGHER else baseline + loss

    def slack(self, value: float, baseline: float) -> float:
        """Distance of ``value`` from the threshold on the passing side (metric units): positive
        passes, negative fails, ``-inf`` for a non-finite value or baseline."""
        if not (math.isfinite(value) and math.isfinite(baseline)):
            return -math.inf
        loss = self.allowed_loss(baseline)
        if self.direction == TWO_SIDED:
            return loss - abs(value - baseline)
        limit = self.threshold(baseline)
        return value - limit if self.direction == HIGHER else limit - value

    def passes(self, value: float, baseline: float) -> bool:
        return self.slack(value, baseline) >= 0.0

    def normalised_slack(self, value: float, baseline: float) -> float:
        """:meth:`slack` in units of the allowed loss: 1 = as good as FP32, 0 = on the threshold,
        negative fails (one-sided metrics better than FP32 exceed 1). A zero allowed loss gives
        0 on the threshold and +-inf off it."""
        s = self.slack(value, baseline)
        loss = self.allowed_loss(baseline)
        if not math.isfinite(s):
            return s
        if loss != 0:  # a negative tolerance (nothing passes) keeps the order too
            return s / abs(loss)
        return 0.0 if s == 0 else math.copysign(math.inf, s)

    def better(self, a: float, b: float) -> bool:
        """True when value ``a`` is strictly better than ``b`` for a one-sided metric (NaN is
        worst; two-sided metrics have no order without a baseline: False)."""
        if not math.isfinite(a):
            return False
        if not math.isfinite(b):
            return True
        if self.direction == TWO_SIDED:
            return False
        return a > b if self.direction == HIGHER else a < b

    def describe_tolerance(self) -> str:
        tol = f"{self.tolerance * 100:.3g}%" if self.relative else f"{self.tolerance:.4g} abs"
        sense = {LOWER: "lower is better", HIGHER: "higher is better",
                 TWO_SIDED: "either way"}[self.direction]
        return f"{tol}, {sense}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "tolerance": self.tolerance, "relative": self.relative,
                "direction": self.direction}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Metric:
        return cls(str(obj["name"]), float(obj["tolerance"]), bool(obj.get("relative", True)),
                   str(obj.get("direction", LOWER)))


@dataclass(frozen=True)
class Criterion:
    """The one-metric criterion: accept a candidate whose metric is within ``tolerance`` of the
    FP32 baseline (the metric :class:`Metric` named ``"metric"``).

    - ``relative=True`` (default): the allowed loss is ``tolerance * |baseline|`` (0.01 = 1%).
    - ``relative=False``: the allowed loss is ``tolerance`` in the metric's own units.
    - ``higher_is_better=False`` (default, e.g. the 3DGAN shape metric): pass when
      ``metric <= baseline + allowed``; with ``True`` (e.g. an accuracy): ``metric >= baseline - allowed``.

    A candidate *better* than FP32 always passes. NaN never passes. :meth:`slack` is in metric
    units (the tuner ranks on :meth:`Metric.normalised_slack`).
    """

    tolerance: float = 0.01
    relative: bool = True
    higher_is_better: bool = False

    def __post_init__(self) -> None:
        if not math.isfinite(self.tolerance):
            raise ValueError(f"tolerance must be finite, got {self.tolerance}")

    def as_metric(self, name: str = "metric") -> Metric:
        return Metric(name, self.tolerance, self.relative, HIGHER if self.higher_is_better else LOWER)

    def allowed_loss(self, baseline: float) -> float:
        """How much worse than ``baseline`` a metric may be, in metric units."""
        return self.as_metric().allowed_loss(baseline)

    def threshold(self, baseline: float) -> float:
        """The worst metric value that still passes."""
        return self.as_metric().threshold(baseline)

    def passes(self, metric: float, baseline: float) -> bool:
        return self.as_metric().passes(metric, baseline)

    def slack(self, metric: float, baseline: float) -> float:
        """Distance of ``metric`` from the threshold on the passing side (metric units): positive
        passes, negative fails, ``-inf`` for a non-finite metric or baseline."""
        return self.as_metric().slack(metric, baseline)

    def better(self, a: float, b: float) -> bool:
        """True when metric ``a`` is strictly better than ``b`` (NaN is worst)."""
        return self.as_metric().better(a, b)

    def describe(self, baseline: float | None = None) -> str:
        sense = "higher is better" if self.higher_is_better else "lower is better"
        kind = f"relative {self.tolerance:.3g} ({self.tolerance * 100:.3g}%)" if self.relative \
            else f"absolute {self.tolerance:.4g}"
        text = f"{kind}, {sense}"
        if baseline is not None:
            text += f"; FP32 {baseline:.6g}, threshold {self.threshold(baseline):.6g}"
        return text

    def to_json(self) -> dict[str, object]:
        return {"tolerance": self.tolerance, "relative": self.relative,
                "higher_is_better": self.higher_is_better}


CriterionLike = Criterion | Metric | Sequence[Metric]
"""What ``tune(criterion=...)`` accepts: a :class:`Criterion`, one :class:`Metric`, or a list."""

Evaluate = Callable[["ov.CompiledModel"], "float | Mapping[str, float]"]
"""``evaluate(compiled_model) -> metric`` (one float) or ``-> {metric name: value}`` (every
metric of the criterion). ``compiled_model(inputs: dict) -> results`` (an
``openvino.CompiledModel``: ``compiled_model(inputs)[0]`` is the first output)."""


def metrics_of(criterion: CriterionLike | None) -> tuple[Metric, ...]:
    """The metrics of a criterion (checked: at least one, unique names)."""
    if criterion is None:
        return (Criterion().as_metric(),)
    if isinstance(criterion, Criterion):
        return (criterion.as_metric(),)
    if isinstance(criterion, Metric):
        return (criterion,)
    metrics = tuple(criterion)
    if not metrics or not all(isinstance(m, Metric) for m in metrics):
        raise ValueError("criterion: expected a Criterion, a Metric or a non-empty list of Metric")
    names = [m.name for m in metrics]
    if len(set(names)) != len(names):
        raise ValueError(f"criterion: metric names repeat: {names}")
    return metrics


@dataclass(frozen=True)
class Objective:
    """What the tuner optimises against: the user's metric(s) and the criterion they must meet.

    The one place the tuning session asks "how good is this candidate?" (:meth:`measure`) and
    "is it good enough?" (:meth:`passes`, :meth:`slack`). Values are ``{metric name: value}``."""

    evaluate: Evaluate
    criterion: CriterionLike = Criterion()

    @property
    def metrics(self) -> tuple[Metric, ...]:
        return metrics_of(self.criterion)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.metrics]

    def measure(self, compiled: ov.CompiledModel) -> dict[str, float]:
        """Every metric of a compiled candidate (floats; NaN never passes)."""
        value = self.evaluate(compiled)
        metrics = self.metrics
        if isinstance(value, Mapping):
            missing = [m.name for m in metrics if m.name not in value]
            if missing:
                raise ValueError(f"evaluate returned no value for metric(s) {missing} "
                                 f"(got {sorted(value)})")
            return {m.name: float(value[m.name]) for m in metrics}
        if len(metrics) != 1:
            raise ValueError(f"evaluate returned one number but the criterion has {len(metrics)} "
                             "metrics: return a dict name -> value")
        return {metrics[0].name: float(value)}

    def slacks(self, values: Mapping[str, float], baselines: Mapping[str, float]) -> dict[str, float]:
        """Normalised slack of every metric (:meth:`Metric.normalised_slack`)."""
        return {m.name: m.normalised_slack(values.get(m.name, math.nan),
                                           baselines.get(m.name, math.nan)) for m in self.metrics}

    def slack(self, values: Mapping[str, float], baselines: Mapping[str, float]) -> float:
        """The smallest normalised slack (>= 0 exactly when every metric passes)."""
        return min(self.slacks(values, baselines).values())

    def limiting(self, values: Mapping[str, float], baselines: Mapping[str, float]) -> str:
        """The metric with the smallest normalised slack (the first such in criterion order)."""
        s = self.slacks(values, baselines)
        return min(s, key=lambda name: s[name])

    def passes(self, values: Mapping[str, float], baselines: Mapping[str, float]) -> bool:
        """Does every metric meet its tolerance against the FP32 ``baselines``?"""
        return all(m.passes(values.get(m.name, math.nan), baselines.get(m.name, math.nan))
                   for m in self.metrics)

    def describe(self, baselines: Mapping[str, float] | None = None) -> str:
        if isinstance(self.criterion, Criterion):
            base = None if not baselines else next(iter(baselines.values()))
            return self.criterion.describe(base)
        metrics = self.metrics
        if len(metrics) == 1:
            return f"{metrics[0].name} within {metrics[0].describe_tolerance()}"
        return f"{len(metrics)} metrics (" + ", ".join(m.name for m in metrics[:4]) + \
            (", ..." if len(metrics) > 4 else "") + ")"

    def to_json(self) -> object:
        """The criterion as stored in the history (a changed criterion refuses a resume)."""
        if isinstance(self.criterion, Criterion):
            return self.criterion.to_json()
        return {"metrics": [m.to_json() for m in self.metrics]}
