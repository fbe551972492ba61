"""Export the generator to ONNX: inputs ``z`` (B, 200) and ``energy`` (B,) in GeV, output
``showers`` (B, 25, 25, 25) in GeV, dynamic batch. This file is what the inference runtime and
the quantization tuner consume."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from caloforge.atomic import atomic_path
from caloforge.gan.model import Generator

ONNX_OPSET = 17
INPUT_NAMES = ("z", "energy")
OUTPUT_NAME = "showers"


def export_onnx(generator: Generator, path: str | os.PathLike[str], opset: int = ONNX_OPSET) -> Path:
    """Write ``generator`` (in eval mode) as ONNX to ``path`` atomically; returns the path."""
    was_training = generator.training
    generator.eval()
    z = torch.zeros(2, generator.latent_dim)
    e = torch.full((2,), 100.0)
    try:
        with atomic_path(path, suffix=".onnx") as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                generator,
                (z, e),
                str(tmp),
                input_names=list(INPUT_NAMES),
                output_names=[OUTPUT_NAME],
                dynamic_axes={"z": {0: "batch"}, "energy": {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
    finally:
        generator.train(was_training)
    return Path(path)
