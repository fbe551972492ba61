"""Turn a :class:`~caloforge.quant.config.Config` into an OpenVINO model and compile it.

The recipe is :mod:`caloforge.ovgraph`'s (the runtime's full INT8 uses the same one):

1. NNCF calibrates the whole model once per set of quantization parameters
   (:func:`caloforge.ovgraph.calibrate`, weights kept as FP32 constants behind FakeQuantize
   nodes so they can be restored). The result is cached.
2. For a configuration, the calibrated model is cloned and its layers marked
   (:func:`caloforge.ovgraph.mark_precisions`): only the quantizers of INT8 layers stay, NNCF's
   corrected biases are restored for the others, BF16 layers are marked and the precision hint
   is stored in the model (``runtime_options``) so a saved IR says how it must be compiled;
   :func:`compile_model` reads it back. The all-FP32 configuration is the FP32 model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import openvino as ov

from caloforge.errors import UserError
from caloforge.ovgraph import (
    KEEP_F32,
    PASS_THROUGH,
    PRECISION_HINT_PATH,
    Calibrated,
    calibrate,
    compile_model,
    input_quantizer,
    keep_int8_quantizers,
    mark_bf16_layers,
    precision_hint,
    read_model,
    realise,
    set_precision_hint,
)
from caloforge.quant.config import Config

__all__ = [
    "KEEP_F32", "PASS_THROUGH", "PRECISION_HINT_PATH", "Builder", "apply_precisions",
    "compile_model", "input_quantizer", "mark_bf16_layers", "precision_hint", "read_model",
]


def apply_precisions(model: ov.Model, config: Config) -> list[str]:
    """Keep the FakeQuantize nodes that feed ``config``'s INT8 layers, remove all others (in
    place); see :func:`caloforge.ovgraph.keep_int8_quantizers`. Returns notes."""
    return keep_int8_quantizers(model, config.precisions)


class Builder:
    """Builds and compiles candidate models of one FP32 model for given calibration data.

    ``calibration`` is a list of input dictionaries (input name -> array), each one model call.
    """

    def __init__(self, model: ov.Model, calibration: Sequence[Mapping[str, np.ndarray]],
                 device: str = "CPU", compile_config: Mapping[str, Any] | None = None,
                 model_type: Any = None) -> None:
        if not calibration:
            raise UserError("calibration: the calibration set is empty")
        self.model = model
        self.calibration = list(calibration)
        self.device = device
        self.compile_config = dict(compile_config or {})
        self.model_type = model_type
        self._calibrated: dict[str, Calibrated] = {}

    def calibrated(self, params: Mapping[str, Any]) -> Calibrated:
        """The fully quantized model for ``params`` and the constants NNCF changed (cached)."""
        key = repr(sorted(params.items()))
        if key not in self._calibrated:
            self._calibrated[key] = calibrate(self.model, self.calibration, params,
                                              keep_weights=True, model_type=self.model_type)
        return self._calibrated[key]

    def build(self, config: Config) -> ov.Model:
        """An ``ov.Model`` realising ``config`` (FakeQuantize for INT8 layers, marks for BF16)."""
        return realise(self.calibrated(config.params), config.precisions)

    def compile(self, model: ov.Model, extra: Mapping[str, Any] | None = None) -> ov.CompiledModel:
        return compile_model(model, device=self.device,
                             config={**self.compile_config, **(extra or {})})

    def fp32_model(self) -> ov.Model:
        """A copy of the FP32 model that says ``f32``."""
        model = self.model.clone()
        set_precision_hint(model, "f32")
        return model

    def compile_fp32(self) -> ov.CompiledModel:
        return self.compile(self.fp32_model())
