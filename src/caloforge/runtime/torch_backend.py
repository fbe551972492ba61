"""PyTorch eager FP32 reference backend: the shipped (or given) safetensors weights loaded into
:class:`caloforge.gan.model.Generator`. This is what a physicist runs today without caloforge's
runtime — the baseline of ``caloforge bench`` and the reference of the parity tests."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from caloforge.errors import UserError
from caloforge.runtime.backend import (
    CompiledGenerator,
    ExecConfig,
    as_inputs,
    check_precision,
    register_backend,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch


def load_generator(weights: str | os.PathLike[str] | None = None) -> Any:
    """The generator of ``weights`` (safetensors; ``None``: the shipped weights) in eval mode,
    of either architecture (3DGAN or phase, recognised by its tensors:
    :func:`caloforge.gan.checkpoint.load_generator`, which names the file and the first
    missing, unexpected or mis-shaped tensors of a wrong or corrupt file in one line)."""
    from caloforge.gan.checkpoint import load_generator as load_either
    from caloforge.gan.shipped import default_weights_path

    p = default_weights_path() if weights is None else Path(weights)
    if not p.is_file():
        raise UserError(f"{p}: no such weights file")
    if p.suffix.lower() != ".safetensors":
        raise UserError(f"{p}: the torch backend reads safetensors weights (.safetensors)")
    return load_either(p)


class TorchGenerator(CompiledGenerator):
    backend = "torch"

    def __init__(self, module: Any, config: ExecConfig, info: dict[str, Any]) -> None:
        self.module = module
        self.latent_dim = int(getattr(module, "latent_dim", self.latent_dim))
        if hasattr(module, "cell_threshold_gev"):
            self.cell_threshold_gev = float(module.cell_threshold_gev)
        self.precision = "fp32"
        self.config = config
        self.info = info

    def infer(self, z: np.ndarray, energy: np.ndarray) -> np.ndarray:
        import torch

        z, energy = as_inputs(z, energy)
        torch.set_num_threads(self.config.resolved_threads())
        with torch.inference_mode(), warnings.catch_warnings():
            # "padding='same' with even kernel lengths ... zero-padded copy": expected (conv1)
            warnings.filterwarnings("ignore", message=".*padding='same'.*")
            return self.module(torch.from_numpy(z), torch.from_numpy(energy)).numpy()


class TorchBackend:
    """PyTorch eager, FP32 only, one stream (``threads`` intra-op threads)."""

    name = "torch"
    precisions: tuple[str, ...] = ("fp32",)

    def compile(self, model: torch.nn.Module | str | os.PathLike[str] | None = None,
                precision: str | None = "fp32",
                config: ExecConfig | None = None, **options: Any) -> TorchGenerator:
        import torch

        check_precision(self, precision or "fp32")
        config = config or ExecConfig()
        if config.streams != 1:
            raise UserError(f"streams {config.streams}: the torch backend runs one stream "
                            "(streams=1)")
        module = model if isinstance(model, torch.nn.Module) else load_generator(model)
        module.eval()
        return TorchGenerator(module, config, {"model": str(model) if model else "shipped"})


register_backend("torch", TorchBackend)
