"""``pareto``: sweep the sensitivity-ranked fallback path, timing every candidate.

Candidates: all-INT8 under every candidate quantization parameter set; then, with the best set,
the top-k most sensitive layers reverted, for k = 0 .. number of layers, in FP32 and
(where the CPU has BF16) in BF16. Every candidate's metric *and* latency are measured; the loop
returns the fastest passing one and the accuracy/speed Pareto front of all of them. The most
evaluations of the three strategies, in exchange for the whole trade-off curve.
"""

from __future__ import annotations

from caloforge.quant.config import BF16, FP32
from caloforge.quant.strategies import register
from caloforge.quant.strategies.base import Request, SearchGenerator, Strategy


@register
class ParetoStrategy(Strategy):
    name = "pareto"
    description = "time every candidate on the ranked fallback path; fastest passing + Pareto front"

    def search(self) -> SearchGenerator:
        base = (yield from self.choose_params(latency=True, stop_at_pass=False)).config
        errors = yield from self.sensitivities()
        order = sorted(self.space.names, key=lambda n: (-errors[n], self.space.names.index(n)))
        fallbacks = [FP32, BF16] if self.space.has_bf16 else [FP32]
        for precision in fallbacks:
            for k in range(1, len(order) + 1):
                config = base.with_precision(order[:k], precision)
                yield Request(config, latency=True, note=f"top-{k} sensitive in {precision}")
