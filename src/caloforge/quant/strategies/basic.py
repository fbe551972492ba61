"""``basic``: quantize everything, then fall back to FP32 one layer at a time in network order.

The classic LPOT/Neural Compressor recipe: try all-INT8 (under each candidate quantization
parameter set, keeping the best); while the criterion fails, revert the
next layer (network order, accumulating). Once a configuration passes, the layers reverted
*before* the last one are re-tried in INT8 one by one (kept INT8 if the criterion still holds),
so a harmless early layer is not left in FP32 just because it came first.
"""

from __future__ import annotations

from caloforge.quant.strategies import register
from caloforge.quant.strategies.base import SearchGenerator, Strategy


@register
class BasicStrategy(Strategy):
    name = "basic"
    description = "all INT8, then accumulate FP32 fallbacks in network order; then re-quantize"

    def search(self) -> SearchGenerator:
        outcome = yield from self.choose_params()
        config = outcome.config
        config, outcome, reverted = yield from self.revert_until_pass(config, outcome,
                                                                      self.space.names)
        if not outcome.passed:
            return
        yield from self.requantize(config, reverted[:-1])
