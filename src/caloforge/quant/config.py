"""A point of the search: the precision of every tunable layer plus quantization parameters.

A :class:`Config` is immutable and has a canonical hash (:meth:`Config.key`), so the tuner can
recognise a configuration it already tried (``--resume``) whatever order the layers were listed in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from caloforge.ovgraph.calibrate import DEFAULT_QUANT_PARAMS
from caloforge.ovgraph.precisions import BF16, FP32, INT8, PRECISIONS

__all__ = ["BF16", "DEFAULT_PARAMS", "FP32", "INT8", "PRECISIONS", "Config"]

DEFAULT_PARAMS: Mapping[str, Any] = DEFAULT_QUANT_PARAMS
"""Quantization parameters of a configuration that names none (the first default set)."""


@dataclass(frozen=True)
class Config:
    """Per-layer precisions (layer name -> ``"int8" | "bf16" | "fp32"``) and quantization parameters.

    ``params`` are passed to the builder: ``preset`` (``"performance"``: symmetric activations,
    ``"mixed"``: asymmetric activations), ``range`` (activation range estimator) and
    ``bias_correction`` (NNCF fast bias correction); see :mod:`caloforge.quant.params`.
    """

    precisions: Mapping[str, str]
    params: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_PARAMS))

    def __post_init__(self) -> None:
        bad = {k: v for k, v in self.precisions.items() if v not in PRECISIONS}
        if bad:
            raise ValueError(f"unknown precision(s) {bad}; expected one of {PRECISIONS}")
        object.__setattr__(self, "precisions", MappingProxyType(dict(sorted(self.precisions.items()))))
        object.__setattr__(self, "params", MappingProxyType(dict(sorted(self.params.items()))))

    # -- constructors -------------------------------------------------------------------------
    @classmethod
    def uniform(cls, layers: Iterable[str], precision: str = INT8,
                params: Mapping[str, Any] | None = None) -> Config:
        """Every layer in ``precision``."""
        return cls({name: precision for name in layers}, dict(params or DEFAULT_PARAMS))

    def with_precision(self, layers: str | Iterable[str], precision: str) -> Config:
        """A copy with ``layers`` (one name or several) set to ``precision``."""
        names = [layers] if isinstance(layers, str) else list(layers)
        new = dict(self.precisions)
        for name in names:
            if name not in new:
                raise KeyError(f"{name!r} is not a tunable layer")
            new[name] = precision
        return Config(new, self.params)

    # -- views --------------------------------------------------------------------------------
    def layers_in(self, precision: str) -> list[str]:
        """Names of the layers set to ``precision`` (sorted)."""
        return [k for k, v in self.precisions.items() if v == precision]

    def to_json(self) -> dict[str, Any]:
        return {"precisions": dict(self.precisions), "params": dict(self.params)}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Config:
        return cls(dict(obj["precisions"]), dict(obj.get("params", DEFAULT_PARAMS)))

    def key(self) -> str:
        """Canonical hash (16 hex digits) of the configuration: order-independent, stable across runs."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def summary(self) -> str:
        """Short human description, e.g. ``"int8 3, fp32 1 (/c2/Conv)"``."""
        parts = []
        for p in PRECISIONS:
            names = self.layers_in(p)
            if names:
                shown = f" ({', '.join(names)})" if p != INT8 and len(names) <= 3 else ""
                parts.append(f"{p} {len(names)}{shown}")
        return ", ".join(parts) or "no layers"
