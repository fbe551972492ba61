"""Export the generator to ONNX: inputs ``z`` (B, latent) and ``energy`` (B,) in GeV, output
``showers`` (B, 25, 25, 25) in GeV, dynamic batch. This file is what the inference runtime and
the quantization tuner consume.

Transposed convolutions (the ``phase`` architecture's ``up1``/``up2``) are exported in their
sub-pixel form (:mod:`caloforge.gan.subpixel`: one convolution at the low resolution and a
depth-to-space shuffle, the same function): OpenVINO runs a ConvTranspose as a deconvolution
kernel that spent 79% of the phase generator's INT8 time on this CPU (docs/runtime.md)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import cast

import torch

from caloforge.atomic import atomic_path
from caloforge.gan.model import Generator
from caloforge.gan.subpixel import subpixel_copy

ONNX_OPSET = 17
INPUT_NAMES = ("z", "energy")
OUTPUT_NAME = "showers"


def export_onnx(generator: Generator | torch.nn.Module, path: str | os.PathLike[str],
                opset: int = ONNX_OPSET, *, subpixel: bool = True) -> Path:
    """Write ``generator`` (in eval mode) as ONNX to ``path`` atomically; returns the path.
    ``subpixel``: export every ``nn.ConvTranspose3d`` as its sub-pixel convolution (on a copy;
    ``generator`` is not changed); ``False`` writes them as ONNX ConvTranspose."""
    was_training = generator.training
    generator.eval()
    graph = subpixel_copy(generator)[0] if subpixel else generator
    z = torch.zeros(2, cast(int, generator.latent_dim))
    e = torch.full((2,), 100.0)
    try:
        with atomic_path(path, suffix=".onnx") as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph,
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
