"""Generator weights and training checkpoints in safetensors + JSON (never pickle).

* A *generator file* (``*.safetensors``) holds ``Generator.state_dict()`` (weights, BatchNorm
  statistics and the ``image_scale`` buffer) with metadata ``format = caloforge-generator``.
  :func:`load_generator` also accepts a training checkpoint (keys ``generator.*``).
* A *training checkpoint* of epoch k is three files in ``RUN/checkpoints/``:
  ``epoch-000k.safetensors`` (``generator.*`` and ``discriminator.*`` tensors),
  ``epoch-000k.state.safetensors`` (optimizer tensors ``optG.<i>.<name>`` / ``optD.<i>.<name>``
  and RNG states ``rng.*`` as uint8 tensors) and ``epoch-000k.json`` (epoch, config, optimizer
  hyper-parameters, Python/NumPy RNG states, metrics history). Each is written atomically and
  the JSON last, so a checkpoint whose JSON exists is complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from caloforge.atomic import atomic_path
from caloforge.errors import UserError
from caloforge.gan.model import Generator
from caloforge.gan.phase import PhaseGenerator

GENERATOR_FORMAT = "caloforge-generator"


def save_tensors(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor],
                 metadata: dict[str, str] | None = None) -> None:
    """Atomically write ``tensors`` (made contiguous, moved to CPU) as safetensors."""
    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(clean, str(tmp), metadata=metadata)


def load_tensors(path: str | os.PathLike[str], what: str = "safetensors file") -> dict[str, torch.Tensor]:
    """Read a safetensors file; any problem is a :class:`UserError` naming the file."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: no such file")
    if p.is_dir():
        raise UserError(f"{p}: is a directory, expected a {what}")
    try:
        return load_file(str(p), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise UserError(f"{p}: corrupt or unreadable {what} ({exc})") from None


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise UserError(f"{path}: corrupt or unreadable safetensors file ({exc})") from None


def save_generator(generator: torch.nn.Module, path: str | os.PathLike[str],
                   metadata: dict[str, Any] | None = None) -> Path:
    """Write the generator's state (weights, BN statistics, image_scale) atomically."""
    meta = {"format": GENERATOR_FORMAT, "latent_dim": str(generator.latent_dim)}
    for k, v in (metadata or {}).items():
        meta[k] = v if isinstance(v, str) else json.dumps(v)
    save_tensors(path, dict(generator.state_dict()), meta)
    return Path(path)


def generator_state_from(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Generator entries of a generator file or a checkpoint (``generator.`` prefix stripped)."""
    if any(k.startswith("generator.") for k in tensors):
        return {k[len("generator."):]: v for k, v in tensors.items() if k.startswith("generator.")}
    return tensors


def apply_state(module: torch.nn.Module, state: dict[str, torch.Tensor], path: str | os.PathLike[str],
                what: str) -> None:
    """Load ``state`` into ``module`` strictly; mismatches become a UserError naming ``path``."""
    expected = module.state_dict()
    if isinstance(module, Generator) and "dense.weight" in state:
        state = dict(state)  # older files: no shower prior (neutral)
        state.setdefault("prior", torch.ones(expected["prior"].shape))
        state.setdefault("prior_energy_power", torch.tensor(0.0))
    if isinstance(module, PhaseGenerator):
        # buffers the calibration sets, absent from older files: Gaussian energy noise (k = 0),
        # the same strength at every energy, no cell-energy coupling to the layer energy, no
        # cross-layer occupancy coupling, no coupling to the shower's depth
        defaults = {"noise_skew": torch.zeros, "noise_val_knots": torch.ones,
                    "value_layer": torch.zeros, "occ_cross": torch.zeros,
                    "value_depth": torch.zeros, "depth_mean": torch.zeros}
        state = dict(state)
        for name, fill in defaults.items():
            if name in expected:
                state.setdefault(name, fill(expected[name].shape))
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s) (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} tensor(s) (e.g. {', '.join(unexpected[:3])})")
        raise UserError(f"{path}: not a caloforge {what}: " + "; ".join(parts))
    for k, v in state.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise UserError(
                f"{path}: tensor {k!r} has shape {tuple(v.shape)}, the {what} expects "
                f"{tuple(expected[k].shape)}"
            )
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise UserError(f"{path}: tensor {k!r} holds NaN or infinite values")
    module.load_state_dict(state)


def load_generator(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> Generator:
    """Load a generator (eval mode) from a generator file or a training checkpoint: a
    :class:`Generator` (reference 3DGAN) or a :class:`caloforge.gan.phase.PhaseGenerator`,
    recognised by its tensors.

    Raises :class:`UserError` ("<file>: <problem>") for a missing, corrupt or mismatched file.
    """
    tensors = load_tensors(path, "generator weights file (safetensors)")
    state = generator_state_from(tensors)
    if "dense1.weight" in state:  # the phase architecture (caloforge.gan.phase)
        table = state.get("layers.table")
        phase = PhaseGenerator(base=int(state["conv1.weight"].shape[1])
                               if "conv1.weight" in state else 32,
                               layer_library=None if table is None or table.ndim != 3
                               else (int(table.shape[0]), int(table.shape[1])),
                               sparse="noise_maps" in state,
                               layer_occupancy="occ_layer" in state,
                               library_stats="layers.hits" in state)
        apply_state(phase, state, path, "phase generator")
        return phase.eval().to(map_location)  # type: ignore[return-value]
    if "dense.weight" not in state:
        raise UserError(f"{path}: no generator weights in this file (keys: {', '.join(sorted(state)[:4])}...)")
    latent = int(state["dense.weight"].shape[1])
    scale = float(state["image_scale"]) if "image_scale" in state and state["image_scale"].numel() == 1 else 100.0
    gen = Generator(latent_dim=latent, image_scale=scale)
    apply_state(gen, state, path, "generator")
    gen.eval()
    return gen.to(map_location)


# ----------------------------------------------------------------------------- optimizers
def optimizer_to_tensors(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state into tensors (for safetensors) and a JSON-able dict."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for name, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"{prefix}.{idx}.{name}"] = val
            else:
                scalars.setdefault(str(idx), {})[name] = val
    groups = []
    for g in sd["param_groups"]:
        groups.append({k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()})
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_tensors(opt: torch.optim.Optimizer, prefix: str, tensors: dict[str, torch.Tensor],
                           meta: dict, path: str | os.PathLike[str]) -> None:
    """Inverse of :func:`optimizer_to_tensors`; loads into ``opt``."""
    state: dict[int, dict[str, Any]] = {}
    for key, val in tensors.items():
        if not key.startswith(prefix + "."):
            continue
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = val
    for idx, extra in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(extra)
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if "betas" in g and isinstance(g["betas"], list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    try:
        opt.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, RuntimeError) as exc:
        raise UserError(f"{path}: optimizer state does not match the model ({exc})") from None
