"""The search space: which layers of a model can be tuned, and how heavy each one is.

The layer lookup itself is :mod:`caloforge.ovgraph.layers` (shared with the runtime); this
module re-exports it for the tuner.
"""

from caloforge.ovgraph.layers import (
    QUANTIZABLE_TYPES,
    Layer,
    available_precisions,
    find_layers,
    layer_flops,
)

__all__ = ["QUANTIZABLE_TYPES", "Layer", "available_precisions", "find_layers", "layer_flops"]
