"""The default generator shipped inside the package (``caloforge/gan/default/``).

Files: ``generator.safetensors`` (weights), ``generator.onnx`` (its export) and
``model_card.json`` (architecture, latent size, cell threshold, training data, seed, epochs,
wall time, hardware, the validation verdict). Everything that says "the shipped model"
(``caloforge generate`` / ``bench`` / ``quantize`` / ``demo`` without ``--model``) reads these
three files through :func:`default_dir`, and what it says about the model (architecture, latent
size, threshold, energy range) through the card, never from constants.

The package also keeps the trained reference 3DGAN once another architecture is the default
(:func:`reference_3dgan_dir`). The directory is the package's ``default/`` unless the
environment variable
``CALOFORGE_DEFAULT_MODEL_DIR`` names another one (a candidate installed with ``caloforge train
--export-default RUN --install-dir DIR``, to try the whole chain on it before shipping it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from caloforge.errors import UserError

#: The package's own default model directory.
PACKAGE_DIR = Path(__file__).resolve().parent / "default"
#: The directory :func:`default_dir` returns when the environment does not override it (tests
#: may monkeypatch this).
DEFAULT_DIR = PACKAGE_DIR
#: The trained reference 3DGAN (the case study's model) once another architecture is the
#: default: :func:`caloforge.gan.ship.export_default` copies a 3DGAN default here before a
#: ``phase`` model replaces it in the package.
REFERENCE_DIR = Path(__file__).resolve().parent / "reference"
#: Environment variable naming another default model directory.
DIR_ENV = "CALOFORGE_DEFAULT_MODEL_DIR"
WEIGHTS_NAME = "generator.safetensors"
ONNX_NAME = "generator.onnx"
CARD_NAME = "model_card.json"


def default_dir() -> Path:
    """The directory of the default model: ``$CALOFORGE_DEFAULT_MODEL_DIR`` when set, else
    :data:`DEFAULT_DIR` (the package's ``default/``)."""
    env = os.environ.get(DIR_ENV)
    return Path(env) if env else DEFAULT_DIR


def _require(name: str) -> Path:
    d = default_dir()
    path = d / name
    if not path.is_file():
        if os.environ.get(DIR_ENV):
            raise UserError(f"{path}: no such default model file ({DIR_ENV} names {d} as the "
                            "default model directory)")
        if d == PACKAGE_DIR:
            raise UserError(f"{path}: the shipped default model is missing from this installation")
        raise UserError(f"{path}: no such default model file")
    return path


def default_onnx_path() -> Path:
    """Path of the shipped generator in ONNX."""
    return _require(ONNX_NAME)


def default_weights_path() -> Path:
    """Path of the shipped generator weights (safetensors)."""
    return _require(WEIGHTS_NAME)


def default_model_card() -> dict[str, Any]:
    """The shipped model's card (includes ``energy_range_gev`` the model was trained on)."""
    path = _require(CARD_NAME)
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable model card ({exc})") from None
    if not isinstance(card, dict):
        raise UserError(f"{path}: the model card is not a JSON object")
    return card


def default_architecture(card: dict[str, Any] | None = None) -> str:
    """The shipped model's architecture (``3dgan`` or ``phase``) from its card; cards written
    before the field existed are 3DGAN cards."""
    c = default_model_card() if card is None else card
    return str(c.get("architecture") or "3dgan")


def describe(card: dict[str, Any] | None = None) -> str:
    """Short human name of the shipped model for reports, from its card: e.g. ``3DGAN
    (reference architecture, latent 200)`` or ``phase generator (latent 3153, layer-energy
    library 64 x 256)``."""
    c = default_model_card() if card is None else card
    arch = default_architecture(c)
    latent = c.get("latent_dim")
    bits = [f"latent {latent}"] if latent is not None else []
    if arch == "3dgan":
        return "3DGAN (reference architecture" + "".join(f", {b}" for b in bits) + ")"
    lib = c.get("layer_library")
    if isinstance(lib, dict) and lib.get("knots"):
        bits.append(f"layer-energy library {lib['knots']} x {lib.get('entries')}")
    return f"{arch} generator" + (f" ({', '.join(bits)})" if bits else "")


def _card_architecture(directory: Path) -> str | None:
    try:
        card = json.loads((directory / CARD_NAME).read_text())
    except (OSError, ValueError):
        return None
    return default_architecture(card) if isinstance(card, dict) else None


def reference_3dgan_dir() -> Path | None:
    """The directory holding the trained reference 3DGAN: the package's ``default/`` while it is
    a 3DGAN, else ``reference/`` once a phase model has replaced it (``None``: neither)."""
    for d in (PACKAGE_DIR, REFERENCE_DIR):
        if _card_architecture(d) == "3dgan" and (d / ONNX_NAME).is_file() \
                and (d / WEIGHTS_NAME).is_file():
            return d
    return None
