"""OpenVINO graph work shared by :mod:`caloforge.runtime` and :mod:`caloforge.quant` (which never
import each other): what both need to read, rewrite, quantize and compile a model.

- :mod:`~caloforge.ovgraph.core`: the one process-wide ``openvino.Core``; read a model; compile
  it with a precision hint; what the plugin runs (:func:`runtime_precisions`).
- :mod:`~caloforge.ovgraph.rewrites` / :mod:`~caloforge.ovgraph.dense` /
  :mod:`~caloforge.ovgraph.shuffle`: the exact rewrites (upsample-convolution folding, dense
  folding, sub-pixel narrowing and depth-to-space fusion, bf16 channel padding);
  :mod:`~caloforge.ovgraph.moves`: channel selections ahead of elementwise ops, data-movement
  chains as one ``Gather``; :mod:`~caloforge.ovgraph.reductions`: inner-axis sums as matrix
  products (applied at compile time, after quantization).
- :mod:`~caloforge.ovgraph.layers`: layer lookup (the quantizable layers, their FLOPs).
- :mod:`~caloforge.ovgraph.precisions`: per-layer precision marking from a mapping
  name -> precision; the BF16 parity rule.
- :mod:`~caloforge.ovgraph.calibrate`: NNCF arguments and the one calibration recipe.

OpenVINO and NNCF are imported on first use, not by importing this package.
"""

from caloforge.ovgraph.calibrate import (
    DEFAULT_QUANT_PARAMS,
    PRESETS,
    RANGES,
    RECIPE_VERSION,
    Calibrated,
    calibrate,
    describe_params,
    nncf_arguments,
    normalize_params,
    quantize_layers,
    realise,
)
from caloforge.ovgraph.core import (
    PRECISION_HINT_PATH,
    RuntimeNode,
    compile_model,
    core,
    is_quantized,
    precision_hint,
    read_model,
    runtime_precisions,
    set_precision_hint,
)
from caloforge.ovgraph.dense import fold_dense_into_convolution
from caloforge.ovgraph.layers import (
    QUANTIZABLE_TYPES,
    Layer,
    available_precisions,
    find_layers,
    find_node,
    layer_flops,
    nodes_by_name,
)
from caloforge.ovgraph.moves import collapse_moves, gather_before_elementwise
from caloforge.ovgraph.precisions import (
    BF16,
    BF16_PARITY_MAX_REL_L2,
    FP32,
    INT8,
    KEEP_F32,
    PASS_THROUGH,
    PRECISIONS,
    bf16_parity_ok,
    input_quantizer,
    keep_int8_quantizers,
    mark_bf16_layers,
    mark_precisions,
    rel_l2,
    restore_bias,
)
from caloforge.ovgraph.reductions import sums_as_matmul
from caloforge.ovgraph.rewrites import (
    BF16_MIN_CHANNELS,
    REWRITES_VERSION,
    fold_upsample_convolutions,
    optimize_model,
    pad_small_convolutions,
)
from caloforge.ovgraph.shuffle import fuse_depth_to_space, narrow_to_crops

__all__ = [
    "BF16", "BF16_MIN_CHANNELS", "BF16_PARITY_MAX_REL_L2", "DEFAULT_QUANT_PARAMS", "FP32", "INT8",
    "KEEP_F32", "PASS_THROUGH", "PRECISIONS", "PRECISION_HINT_PATH", "PRESETS",
    "QUANTIZABLE_TYPES", "RANGES", "RECIPE_VERSION", "REWRITES_VERSION", "Calibrated", "Layer", "RuntimeNode", "available_precisions",
    "bf16_parity_ok", "calibrate", "collapse_moves", "compile_model", "core", "describe_params", "find_layers",
    "find_node", "fold_dense_into_convolution", "fold_upsample_convolutions",
    "fuse_depth_to_space", "gather_before_elementwise", "input_quantizer",
    "is_quantized", "keep_int8_quantizers", "layer_flops", "mark_bf16_layers", "mark_precisions",
    "narrow_to_crops", "nncf_arguments", "nodes_by_name", "normalize_params", "optimize_model",
    "pad_small_convolutions", "precision_hint", "quantize_layers", "read_model", "realise",
    "rel_l2", "restore_bias", "runtime_precisions", "set_precision_hint", "sums_as_matmul",
]
