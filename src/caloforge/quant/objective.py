"""The objective: the user's metric (:data:`Evaluate`) and the accuracy criterion (does a
candidate's metric stay close enough to the FP32 model's?), combined in :class:`Objective`."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import openvino as ov


@dataclass(frozen=True)
class Criterion:
    """Accept a candidate whose metric is within ``tolerance`` of the FP32 baseline.

    - ``relative=True`` (default): the allowed loss is ``tolerance * |baseline|`` (0.01 = 1%).
    - ``relative=False``: the allowed loss is ``tolerance`` in the metric's own units.
    - ``higher_is_better=False`` (default, e.g. the 3DGAN shape metric): pass when
      ``metric <= baseline + allowed``; with ``True`` (e.g. an accuracy): ``metric >= baseline - allowed``.

    A candidate *better* than FP32 always passes. NaN never passes.
    """

    tolerance: float = 0.01
    relative: bool = True
    higher_is_better: bool = False

    def __post_init__(self) -> None:
        if not math.isfinite(self.tolerance):
            raise ValueError(f"tolerance must be finite, got {self.tolerance}")

    def allowed_loss(self, baseline: float) -> float:
        """How much worse than ``baseline`` a metric may be, in metric units."""
        return self.tolerance * abs(baseline) if self.relative else self.tolerance

    def threshold(self, baseline: float) -> float:
        """The worst metric value that still passes."""
        loss = self.allowed_loss(baseline)
        return baseline - loss if self.higher_is_better else baseline + loss

    def passes(self, metric: float, baseline: float) -> bool:
        if not (math.isfinite(metric) and math.isfinite(baseline)):
            return False
        limit = self.threshold(baseline)
        return metric >= limit if self.higher_is_better else metric <= limit

    def slack(self, metric: float, baseline: float) -> float:
        """Distance of ``metric`` from the threshold on the passing side (metric units): positive
        passes, negative fails, ``-inf`` for a non-finite metric or baseline."""
        if not (math.isfinite(metric) and math.isfinite(baseline)):
            return -math.inf
        limit = self.threshold(baseline)
        return metric - limit if self.higher_is_better else limit - metric

    def better(self, a: float, b: float) -> bool:
        """True when metric ``a`` is strictly better than ``b`` (NaN is worst)."""
        if not math.isfinite(a):
            return False
        if not math.isfinite(b):
            return True
        return a > b if self.higher_is_better else a < b

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


Evaluate = Callable[["ov.CompiledModel"], float]
"""``evaluate(compiled_model) -> metric``. ``compiled_model(inputs: dict) -> results`` (an
``openvino.CompiledModel``: ``compiled_model(inputs)[0]`` is the first output)."""


@dataclass(frozen=True)
class Objective:
    """What the tuner optimises against: the user's metric and the criterion it must meet.

    The one place the tuning session asks "how good is this candidate?" (:meth:`measure`) and
    "is it good enough?" (``criterion``)."""

    evaluate: Evaluate
    criterion: Criterion = Criterion()

    def measure(self, compiled: ov.CompiledModel) -> float:
        """The metric of a compiled candidate (a float; NaN never passes)."""
        return float(self.evaluate(compiled))

    def passes(self, metric: float, baseline: float) -> bool:
        """Does ``metric`` meet the criterion against the FP32 ``baseline``?"""
        return self.criterion.passes(metric, baseline)

    def slack(self, metric: float, baseline: float) -> float:
        """Distance from the threshold on the passing side (see :meth:`Criterion.slack`)."""
        return self.criterion.slack(metric, baseline)

    def better(self, a: float, b: float) -> bool:
        """Is metric ``a`` strictly better than ``b``?"""
        return self.criterion.better(a, b)

    def describe(self, baseline: float | None = None) -> str:
        return self.criterion.describe(baseline)
