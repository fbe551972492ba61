"""What a strategy sees and says: the search space in, requests out, outcomes back.

A strategy is a class registered by name whose :meth:`Strategy.search` is a generator: it yields
a :class:`Request` (a configuration to evaluate) and receives the :class:`Outcome`. The tuning
loop (``caloforge.quant.tuner``) owns everything else (building, evaluating, timing, caching,
history, best model, time and trial limits) and knows nothing about any strategy.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from caloforge.quant.config import BF16, DEFAULT_PARAMS, FP32, INT8, Config
from caloforge.quant.params import describe
from caloforge.quant.space import Layer

TRIAL: Literal["trial"] = "trial"
PROBE: Literal["probe"] = "probe"


@dataclass(frozen=True)
class SearchSpace:
    """The layers to tune (network order), the precisions available, and the candidate
    quantization parameter sets (:mod:`caloforge.quant.params`; the first is the default)."""

    layers: Sequence[Layer]
    precisions: Sequence[str] = (INT8, FP32)
    param_sets: Sequence[dict[str, Any]] = field(default_factory=lambda: [dict(DEFAULT_PARAMS)])

    @property
    def names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    @property
    def has_bf16(self) -> bool:
        return BF16 in self.precisions


@dataclass(frozen=True)
class Request:
    """Ask the loop to evaluate ``config``.

    ``kind="trial"``: run the user's metric (and decide pass/fail against the criterion).
    ``kind="probe"``: only the cheap output error vs FP32 on a few calibration inputs (relative L2),
    for sensitivity analysis. ``latency=True`` asks for a throughput measurement too.
    """

    config: Config
    kind: Literal["trial", "probe"] = TRIAL
    latency: bool = False
    note: str = ""


@dataclass(frozen=True)
class Outcome:
    """What the loop measured for a request. ``metric``/``passed``/``slack`` only for trials.

    ``slack``: the smallest normalised slack among the criterion's metrics (1 = as good as
    FP32, 0 = on a threshold, negative fails, ``-inf`` for NaN), whatever each metric's
    direction (:meth:`caloforge.quant.objective.Objective.slack`); ``limiting`` names its metric.
    """

    config: Config
    kind: str
    metric: float | None = None
    passed: bool | None = None
    error: float | None = None  # relative L2 output error vs FP32 (probes; trials too when cheap)
    latency_s: float | None = None
    cached: bool = False  # taken from the history (resume), not re-run
    slack: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # every metric (trials)
    limiting: str = ""  # the metric with the smallest normalised slack


SearchGenerator = Generator[Request, Outcome, None]


class Strategy:
    """Base class: subclasses set ``name`` and implement :meth:`search`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.params: dict[str, Any] = dict(space.param_sets[0]) if space.param_sets else {}
        """The quantization parameters in use (set by :meth:`choose_params`)."""

    def search(self) -> SearchGenerator:  # pragma: no cover - abstract
        raise NotImplementedError
        yield  # make it a generator

    # -- helpers shared by strategies -----------------------------------------------------------
    def uniform(self, precision: str = INT8) -> Config:
        """Every layer in ``precision``, with the parameters in use."""
        return Config.uniform(self.space.names, precision, self.params)

    def choose_params(self, latency: bool = False, stop_at_pass: bool = True,
                      ) -> Generator[Request, Outcome, Outcome]:
        """All-INT8 under each candidate parameter set; the one with the most slack is kept
        (``self.params``) and its outcome returned (ties: the earlier set).

        Stops at the first set whose all-INT8 model passes when ``stop_at_pass`` (nothing can be
        faster than all-INT8). Use as ``outcome = yield from self.choose_params()``.
        """
        best: Outcome | None = None
        several = len(self.space.param_sets) > 1
        for params in self.space.param_sets:
            note = f"all int8 ({describe(params)})" if several else "all int8"
            outcome = yield Request(Config.uniform(self.space.names, INT8, params), latency=latency,
                                    note=note)
            if best is None or _slack(outcome) > _slack(best):
                best = outcome
            if stop_at_pass and outcome.passed:
                break
        assert best is not None
        self.params = dict(best.config.params)
        return best

    def revert_until_pass(
        self, config: Config, outcome: Outcome, order: Sequence[str],
        note: Callable[[str], str] = lambda name: f"fallback {name}",
    ) -> Generator[Request, Outcome, tuple[Config, Outcome, list[str]]]:
        """Revert layers to FP32 in ``order``, accumulating, until a configuration passes.

        Use as ``config, outcome, reverted = yield from self.revert_until_pass(...)``; ``outcome``
        is that of the last configuration tried, ``reverted`` the layers reverted in order.
        """
        reverted: list[str] = []
        for name in order:
            if outcome.passed:
                break
            config = config.with_precision(name, FP32)
            reverted.append(name)
            outcome = yield Request(config, note=note(name))
        return config, outcome, reverted

    def requantize(self, config: Config, names: Sequence[str]) -> Generator[Request, Outcome, Config]:
        """Try each of ``names`` back in INT8, one by one, keeping those that still pass.

        Use as ``config = yield from self.requantize(config, names)``.
        """
        for name in names:
            candidate = config.with_precision(name, INT8)
            result = yield Request(candidate, note=f"re-quantize {name}")
            if result.passed:
                config = candidate
        return config

    def other_params(self, config: Config) -> Generator[Request, Outcome, Outcome | None]:
        """Try ``config``'s precisions under every other candidate parameter set (in order);
        the outcome of the first that passes, or None. The all-INT8 choice of
        :meth:`choose_params` ranks the sets by a model that may fail on a layer the search then
        keeps in float; with that layer in float another set can be the better one.

        Use as ``outcome = yield from self.other_params(config)``."""
        for params in self.space.param_sets:
            if dict(params) == dict(config.params):
                continue
            candidate = Config(dict(config.precisions), dict(params))
            outcome = yield Request(candidate, note=f"{config.summary()} with {describe(params)}")
            if outcome.passed:
                return outcome
        return None

    def sensitivities(self) -> Generator[Request, Outcome, dict[str, float]]:
        """Probe every layer alone in INT8 (the rest FP32): layer -> output error (higher = worse).

        Use as ``errors = yield from self.sensitivities()``.
        """
        fp32 = self.uniform(FP32)
        errors: dict[str, float] = {}
        for name in self.space.names:
            outcome = yield Request(fp32.with_precision(name, INT8), kind=PROBE,
                                    note=f"sensitivity {name}")
            errors[name] = outcome.error if outcome.error is not None else float("inf")
        return errors


def _slack(outcome: Outcome) -> float:
    return outcome.slack if outcome.slack is not None else float("-inf")
