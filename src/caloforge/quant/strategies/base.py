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

from caloforge.quant.config import BF16, FP32, INT8, Config
from caloforge.quant.space import Layer

TRIAL = "trial"
PROBE = "probe"


@dataclass(frozen=True)
class SearchSpace:
    """The layers to tune (network order), the precisions available, the quantization parameters."""

    layers: Sequence[Layer]
    precisions: Sequence[str] = (INT8, FP32)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    @property
    def has_bf16(self) -> bool:
        return BF16 in self.precisions

    def uniform(self, precision: str = INT8) -> Config:
        return Config.uniform(self.names, precision, self.params or None)


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
    """What the loop measured for a request. ``metric``/``passed`` only for trials."""

    config: Config
    kind: str
    metric: float | None = None
    passed: bool | None = None
    error: float | None = None  # relative L2 output error vs FP32 (probes; trials too when cheap)
    latency_s: float | None = None
    cached: bool = False  # taken from the history (resume), not re-run


SearchGenerator = Generator[Request, Outcome, None]


class Strategy:
    """Base class: subclasses set ``name`` and implement :meth:`search`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def search(self) -> SearchGenerator:  # pragma: no cover - abstract
        raise NotImplementedError
        yield  # make it a generator

    # -- helpers shared by strategies -----------------------------------------------------------
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

    def sensitivities(self) -> Generator[Request, Outcome, dict[str, float]]:
        """Probe every layer alone in INT8 (the rest FP32): layer -> output error (higher = worse).

        Use as ``errors = yield from self.sensitivities()``.
        """
        fp32 = self.space.uniform(FP32)
        errors: dict[str, float] = {}
        for name in self.space.names:
            outcome = yield Request(fp32.with_precision(name, INT8), kind=PROBE,
                                    note=f"sensitivity {name}")
            errors[name] = outcome.error if outcome.error is not None else float("inf")
        return errors
