"""The backend interface: compile a generator at a precision, run batches of events.

A backend turns a model (a path, ``None`` for the shipped model, or a backend-native object
such as an ``openvino.Model``) into a :class:`CompiledGenerator`. Callers only see this module:
``get_backend("openvino").compile(model, "int8", ExecConfig(streams=2, threads=1, batch_size=32))``.
A new backend is a class with ``name``, ``precisions`` and ``compile`` registered with
:func:`register_backend`; nothing else changes.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable

import numpy as np

from caloforge.errors import UserError
from caloforge.facts import CELL_THRESHOLD_GEV, IMAGE_SHAPE, LATENT_DIM

if TYPE_CHECKING:  # pragma: no cover
    import openvino as ov
    import torch

    from caloforge.runtime.modelfile import LoadedModel

PRECISIONS = ("fp32", "bf16", "int8")
GeneratorModel: TypeAlias = "ov.Model | LoadedModel | str | os.PathLike[str] | torch.nn.Module | None"
"""What a backend compiles: a path (.onnx / .xml / .safetensors, as the backend reads),
``None`` (the shipped model), an ``openvino.Model``, a LoadedModel or a ``torch.nn.Module``."""
__all__ = [
    "IMAGE_SHAPE",
    "PRECISIONS",
    "Backend",
    "CompiledGenerator",
    "ExecConfig",
    "GeneratorModel",
    "available_backends",
    "cpu_count",
    "get_backend",
    "register_backend",
]


def cpu_count() -> int:
    """Cores this process may use (affinity-aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ExecConfig:
    """How to execute: ``streams`` parallel inference streams x ``threads`` threads each
    (``None``: the cores divided among the streams), ``batch_size`` events per request."""

    streams: int = 1
    threads: int | None = None
    batch_size: int = 32

    def resolved_threads(self) -> int:
        if self.threads is not None:
            return int(self.threads)
        return max(1, cpu_count() // max(1, self.streams))

    def __post_init__(self) -> None:
        if int(self.streams) < 1:
            raise UserError(f"streams {self.streams}: must be >= 1")
        if self.threads is not None and int(self.threads) < 1:
            raise UserError(f"threads {self.threads}: must be >= 1")
        if int(self.batch_size) < 1:
            raise UserError(f"batch size {self.batch_size}: must be >= 1")

    def label(self) -> str:
        return f"{self.streams}x{self.resolved_threads()} b{self.batch_size}"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["threads"] = self.resolved_threads()
        return d


ProgressFn = Callable[[int], None]


class CompiledGenerator(ABC):
    """A generator ready to run: ``z`` (n, latent_dim) float32 and ``energy`` (n,) GeV in,
    showers (n, 25, 25, 25) GeV out.

    Attributes: ``backend`` (name), ``precision`` (``fp32``/``bf16``/``int8``), ``config``
    (:class:`ExecConfig` actually used), ``info`` (backend details for reports).
    """

    backend: str
    precision: str
    config: ExecConfig
    info: dict[str, Any]
    latent_dim: int = LATENT_DIM
    """Size of the latent input ``z`` of this model (200: 3DGAN; 3151: phase)."""
    cell_threshold_gev: float = CELL_THRESHOLD_GEV
    """Cells below this (GeV) are written as exact zeros (the model's manifest / card value)."""

    @abstractmethod
    def infer(self, z: np.ndarray, energy: np.ndarray) -> np.ndarray:
        """Run one batch synchronously on one stream; any number of events."""

    def run(self, z: np.ndarray, energy: np.ndarray, out: np.ndarray | None = None,
            progress: ProgressFn | None = None) -> np.ndarray:
        """Run all events (split into ``config.batch_size`` batches, spread over the streams);
        results are in input order. ``progress(n)`` is called as batches finish."""
        z, energy = as_inputs(z, energy)
        n = z.shape[0]
        if out is None:
            out = np.empty((n, *IMAGE_SHAPE), dtype=np.float32)
        b = self.config.batch_size
        for lo in range(0, n, b):
            hi = min(lo + b, n)
            out[lo:hi] = self.infer(z[lo:hi], energy[lo:hi])
            if progress is not None:
                progress(hi - lo)
        return out

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (threads, sessions)."""

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "precision": self.precision, **self.config.as_dict(),
                **self.info}

    def __enter__(self) -> CompiledGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def as_inputs(z: np.ndarray, energy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = np.ascontiguousarray(z, dtype=np.float32)
    energy = np.ascontiguousarray(np.asarray(energy, dtype=np.float32).reshape(-1))
    if z.ndim != 2 or z.shape[0] != energy.shape[0]:
        raise ValueError(f"z {z.shape} and energy {energy.shape} do not match")
    return z, energy


@runtime_checkable
class Backend(Protocol):
    """What a backend provides. ``model``: a path (ONNX, IR, safetensors... as the backend
    understands), ``None`` for the shipped model, or a backend-native model object."""

    name: str
    precisions: tuple[str, ...]

    def compile(self, *args: Any, **kwargs: Any) -> CompiledGenerator:
        """``compile(model, precision="fp32", config=None, **backend_options)``."""
        ...


_REGISTRY: dict[str, Callable[[], Backend]] = {}


def register_backend(name: str, factory: Callable[[], Backend]) -> None:
    """Register a backend factory under ``name`` (called lazily, on first use)."""
    _REGISTRY[name] = factory


def available_backends() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def get_backend(name: str) -> Backend:
    """The backend registered as ``name`` (``openvino``, ``torch``, ``onnxruntime``)."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise UserError(
            f"unknown backend {name!r}; available: {', '.join(available_backends())}"
        ) from None
    return factory()


def check_precision(backend: Backend, precision: str) -> str:
    p = str(precision).lower()
    if p not in backend.precisions:
        raise UserError(
            f"precision {precision!r} is not supported by the {backend.name} backend "
            f"(supported: {', '.join(backend.precisions)})"
        )
    return p
