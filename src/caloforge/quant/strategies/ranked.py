"""``ranked``: revert the most sensitive layers first, then win back what is not needed.

1. Try all-INT8 under each candidate quantization parameter set and keep the best set (done if
   one passes and the CPU has no BF16 to try).
2. Sensitivity: each layer alone in INT8 (rest FP32), output error vs FP32 on a few calibration
   inputs (a cheap probe, no metric evaluation). While the criterion fails, revert the next most
   sensitive layer (accumulating).
3. Re-quantize the reverted layers, least sensitive first, keeping each that still passes.
   If more than one layer is still in float: try all-INT8 with only the most sensitive layer in
   float under each other parameter set, and continue with the first that passes (the set chosen
   in step 1 was ranked on the all-INT8 model, which that layer spoils).
4. Where the CPU has BF16: try each remaining FP32 layer in BF16 (least sensitive first), keeping
   it if it passes (for a configuration with BF16 layers the loop's "pass" includes a parity
   check of the output against the same configuration with those layers in FP32).
"""

from __future__ import annotations

from caloforge.quant.config import BF16, FP32, INT8
from caloforge.quant.strategies import register
from caloforge.quant.strategies.base import Request, SearchGenerator, Strategy


@register
class RankedStrategy(Strategy):
    name = "ranked"
    description = "sensitivity-ranked FP32 fallback, then re-quantize and try BF16"

    def search(self) -> SearchGenerator:
        outcome = yield from self.choose_params()
        config = outcome.config
        if outcome.passed:
            return  # nothing to revert (and no FP32 layer to try in BF16)
        errors = yield from self.sensitivities()
        order = sorted(self.space.names, key=lambda n: (-errors[n], self.space.names.index(n)))
        config, outcome, reverted = yield from self.revert_until_pass(
            config, outcome, order, note=lambda n: f"fallback {n} (error {errors[n]:.3g})")
        if not outcome.passed:
            return
        # the last revert made it pass: keep it; win back the others, least sensitive first
        config = yield from self.requantize(config, sorted(reverted[:-1], key=lambda n: errors[n]))
        if len(config.layers_in(FP32)) > 1 and len(self.space.param_sets) > 1:
            # only the most sensitive layer in float, under the other parameter sets
            retry = yield from self.other_params(
                self.uniform(INT8).with_precision(order[0], FP32))
            if retry is not None:
                config = retry.config
                self.params = dict(config.params)
        if self.space.has_bf16:
            for name in sorted(config.layers_in(FP32), key=lambda n: errors[n]):
                candidate = config.with_precision(name, BF16)
                result = yield Request(candidate, note=f"bf16 {name}")
                if result.passed:  # the loop's pass includes the BF16 parity check
                    config = candidate
