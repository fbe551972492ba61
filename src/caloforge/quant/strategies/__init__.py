"""Tuning strategies, registered by name.

Adding a strategy is adding a module with a :class:`Strategy` subclass decorated with
:func:`register`; the tuning loop picks it by name and never needs editing.
"""

from __future__ import annotations

from caloforge.errors import UserError
from caloforge.quant.strategies.base import (
    PROBE,
    TRIAL,
    Outcome,
    Request,
    SearchGenerator,
    SearchSpace,
    Strategy,
)

_REGISTRY: dict[str, type[Strategy]] = {}

DEFAULT_STRATEGY = "ranked"
"""The default (see docs/quantization.md: fewest metric evaluations to a passing, fast model)."""


def register(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"strategy {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def get_strategy(name: str) -> type[Strategy]:
    """The strategy class registered as ``name`` (UserError listing the choices otherwise)."""
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown strategy {name!r}; choose from {', '.join(available())}") from None


def available() -> list[str]:
    """Names of the registered strategies."""
    _load_builtin()
    return sorted(_REGISTRY)


def _load_builtin() -> None:
    from caloforge.quant.strategies import basic, pareto, ranked  # noqa: F401 (registers)


__all__ = [
    "DEFAULT_STRATEGY", "PROBE", "TRIAL", "Outcome", "Request", "SearchGenerator", "SearchSpace",
    "Strategy", "available", "get_strategy", "register",
]
