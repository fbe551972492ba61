"""Which quantization parameters let which layers of the shipped generator pass INT8.

    python benchmarks/bench_quant_params.py [--reference-events 1400] [--calibration-size 200]

On the runtime's rewritten graph (what ``caloforge quantize`` tunes), for every default parameter
set (``caloforge.quant.params.DEFAULT_PARAM_SETS``): the 3DGAN metric (vs a simulated GFlash
reference, fixed latent noise, as the tuner evaluates) of all layers INT8, of each layer alone in
INT8, and of all but the last layer; the total-energy ratio of those models to FP32. Then, for the
last layer alone in INT8 (``minmax``), the metric with only its weight quantizer and with only its
activation quantizer, which says which of the two costs the metric. Prints tables.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np


def _total_energy(compiled, z: np.ndarray, e: np.ndarray, batch: int = 50) -> float:
    return float(sum(np.asarray(compiled({"z": z[i:i + batch], "energy": e[i:i + batch]})[0]).sum()
                     for i in range(0, e.size, batch)))


def _drop_quantizer(model, layer: str, port: int) -> None:
    """Remove the FakeQuantize feeding input ``port`` (0 activation, 1 weights) of ``layer``."""
    from caloforge.ovgraph import find_node, input_quantizer

    found = input_quantizer(find_node(model, layer), port)
    if found is None:
        raise RuntimeError(f"{layer}: no quantizer on input {port}")
    fq = found[0]
    fq.output(0).replace(fq.input_value(0))
    model.validate_nodes_and_infer_types()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference-events", type=int, default=1400)
    ap.add_argument("--calibration-size", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    warnings.simplefilter("ignore")

    from caloforge.facts import LATENT_DIM
    from caloforge.ovgraph import find_layers
    from caloforge.quant import FP32, INT8, Config, Criterion
    from caloforge.quant.build import Builder
    from caloforge.quant.params import DEFAULT_PARAM_SETS, describe
    from caloforge.runtime import latent_noise
    from caloforge.workflows import prepare_generator_tuning

    t0 = time.perf_counter()
    prepared = prepare_generator_tuning(None, None, calibration_size=args.calibration_size,
                                        reference_events=args.reference_events, seed=args.seed,
                                        criterion=Criterion(0.01))  # the 3DGAN metric alone
    model, obj = prepared.graph, prepared.objective
    names = [layer.name for layer in find_layers(model)]
    short = [n.split("/")[1] for n in names]
    builder = Builder(model, obj.calibration)
    fp32 = builder.compile_fp32()
    base = obj.evaluate(fp32)
    threshold = Criterion(0.01).threshold(base)
    e_energy = np.repeat(np.array([50, 100, 200, 300, 400, 500], np.float32), 100)
    z_energy = latent_noise(args.seed + 5, 0, e_energy.size, LATENT_DIM)
    e_fp32 = _total_energy(fp32, z_energy, e_energy)
    print(f"reference {obj.description}; calibration {args.calibration_size} events")
    print(f"FP32 metric {base:.5f}; 1% threshold {threshold:.5f}")

    def score(config: Config, edit=None) -> tuple[float, float]:
        m = builder.build(config)
        if edit is not None:
            edit(m)
        compiled = builder.compile(m)
        return obj.evaluate(compiled), _total_energy(compiled, z_energy, e_energy) / e_fp32

    head = ["parameters", "all INT8", *[f"{s} alone" for s in short], f"all but {short[-1]}",
            "E ratio (all)", f"E ratio (all but {short[-1]})"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for params in DEFAULT_PARAM_SETS:
        fp = Config.uniform(names, FP32, params)
        m_all, r_all = score(Config.uniform(names, INT8, params))
        singles = [score(fp.with_precision(n, INT8))[0] for n in names]
        m_but, r_but = score(fp.with_precision(names[:-1], INT8))
        metrics = [f"{v:.5f}{'*' if v <= threshold else ''}" for v in (m_all, *singles, m_but)]
        print("| " + " | ".join([describe(params), *metrics, f"{r_all:.4f}", f"{r_but:.4f}"]) + " |")
    print("(* passes the 1% criterion)")

    last = names[-1]
    only_last = Config.uniform(names, FP32, DEFAULT_PARAM_SETS[0]).with_precision(last, INT8)
    print(f"\n{short[-1]} alone in INT8 ({describe(DEFAULT_PARAM_SETS[0])}):")
    for label, port in (("both quantizers", None), ("weights only (activation quantizer removed)", 0),
                        ("activations only (weight quantizer removed)", 1)):
        edit = None if port is None else (lambda m, p=port: _drop_quantizer(m, last, p))
        metric, ratio = score(only_last, edit)
        print(f"  {label:<45} metric {metric:.5f}{' (passes)' if metric <= threshold else ''}, "
              f"energy ratio {ratio:.4f}")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
