"""The default generator shipped inside the package (``caloforge/gan/default/``).

Files: ``generator.safetensors`` (weights), ``generator.onnx`` (its export) and
``model_card.json`` (training data, seed, epochs, wall time, hardware, metric values).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from caloforge.errors import UserError

DEFAULT_DIR = Path(__file__).resolve().parent / "default"
WEIGHTS_NAME = "generator.safetensors"
ONNX_NAME = "generator.onnx"
CARD_NAME = "model_card.json"


def _require(name: str) -> Path:
    path = DEFAULT_DIR / name
    if not path.is_file():
        raise UserError(f"{path}: the shipped default model is missing from this installation")
    return path


def default_onnx_path() -> Path:
    """Path of the shipped generator in ONNX."""
    return _require(ONNX_NAME)


def default_weights_path() -> Path:
    """Path of the shipped generator weights (safetensors)."""
    return _require(WEIGHTS_NAME)


def default_model_card() -> dict[str, Any]:
    """The shipped model's card (includes ``energy_range_gev`` the model was trained on)."""
    return json.loads(_require(CARD_NAME).read_text())
