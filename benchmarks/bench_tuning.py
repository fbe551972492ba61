"""Tuning cost per strategy: trials, metric evaluations, probes and wall time.

    python benchmarks/bench_tuning.py                       # the shipped GAN (3DGAN metric)
    python benchmarks/bench_tuning.py --model gen.onnx --reference ref.h5
    python benchmarks/bench_tuning.py --synthetic           # tiny Conv3d model, output-error metric

A model with inputs ``z`` and ``energy`` is tuned against the generator's default multi-metric
criterion (``caloforge.workflows.criterion.DEFAULT_CRITERION``: the 3DGAN shape metric against
``--reference`` or a simulated GFlash sample, per-energy response / width / hits and the paired
FPD), or with ``--tolerance T`` against the 3DGAN metric alone; ``--criterion NAME:TOL``
(repeatable) as in ``caloforge quantize``. Per strategy it prints trials, metric evaluations,
probes, wall time, the INT8 FLOPs share, the final model's limiting metric and the metric that
limited the search. Any other ONNX model (and ``--synthetic``) gets a
generic metric: relative L2 distance of its first output to a fixed noisy copy of the FP32 output
on random inputs (lower is better; the noise keeps the FP32 value away from zero).
Each strategy runs in its own fresh output folder, one after the other in this process, so the
numbers (wall time, latency) are comparable within one run; the machine should be otherwise idle.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def synthetic_model(path: Path) -> Path:
    """A small 3DGAN-like Conv3d stack with one INT8-hostile layer (outlier activations)."""
    import torch

    torch.manual_seed(0)

    class Synthetic(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dense = torch.nn.Linear(64, 16 * 6 * 6 * 6)
            self.c1 = torch.nn.Conv3d(16, 32, 3, padding=1)
            self.c2 = torch.nn.Conv3d(32, 16, 3, padding=1)
            self.c3 = torch.nn.Conv3d(16, 8, 3, padding=1)
            self.c4 = torch.nn.Conv3d(8, 1, 2)
            mask = torch.ones(1, 1, 12, 12, 12)
            mask[..., 0, 0, 0] = 1e4  # makes c2's input range hostile to INT8
            self.register_buffer("mask", mask)

        def forward(self, x):
            h = self.dense(x).reshape(-1, 16, 6, 6, 6)
            h = torch.nn.functional.interpolate(torch.relu(self.c1(h)), scale_factor=2)
            h = torch.tanh(self.c2(h * self.mask))
            h = torch.relu(self.c3(h))
            return torch.relu(self.c4(h))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Synthetic().eval(), (torch.randn(2, 64),), str(path), input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}},
                          dynamo=False)
    return path


def generic_objective(model: Path, calibration_size: int, seed: int = 0):
    """Random-input calibration and the noisy-target output metric for any ONNX model."""
    from caloforge.ovgraph import compile_model, read_model

    m = read_model(model)
    rng = np.random.default_rng(seed)

    def sample(batch: int) -> dict[str, np.ndarray]:
        out = {}
        for port in m.inputs:
            dims = [batch if i == 0 or d.is_dynamic else d.get_length()
                    for i, d in enumerate(port.get_partial_shape())]
            out[port.get_any_name()] = rng.standard_normal(dims).astype(np.float32)
        return out

    calibration = [sample(1) for _ in range(calibration_size)]
    eval_inputs = sample(64)
    compiled = compile_model(m, hint="f32")
    ref = np.asarray(compiled(eval_inputs)[0], dtype=np.float64)
    target = ref + 0.3 * rng.standard_normal(ref.shape) * np.linalg.norm(ref) / np.sqrt(ref.size)

    def evaluate(c) -> float:
        y = np.asarray(c(eval_inputs)[0], dtype=np.float64)
        return float(np.linalg.norm(y - target) / np.linalg.norm(target))

    return calibration, evaluate, "relative L2 to a noisy FP32 target (synthetic metric)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="ONNX model (default: the shipped GAN, else --synthetic)")
    p.add_argument("--synthetic", action="store_true", help="tune a small synthetic Conv3d model")
    p.add_argument("--reference", help="reference HDF5 for the GAN metric (default: simulated)")
    p.add_argument("--reference-events", type=int, default=700)
    p.add_argument("--strategies", default="basic,ranked,pareto")
    p.add_argument("--tolerance", type=float, default=None,
                   help="relative tolerance of the one metric: the 3DGAN metric alone for the GAN "
                        "(default: the multi-metric criterion), 0.1 synthetic")
    p.add_argument("--criterion", action="append", default=None, metavar="NAME:TOL",
                   help="GAN criterion metrics as in caloforge quantize (default: the default)")
    p.add_argument("--scan-events", type=int, default=400,
                   help="showers per energy of the per-energy metrics (GAN)")
    p.add_argument("--calibration-size", type=int, default=None,
                   help="calibration samples (default 200 GAN, 32 synthetic)")
    p.add_argument("--latency-batch", type=int, default=32)
    p.add_argument("--output", help="keep the per-strategy outputs here (default: a temp folder)")
    args = p.parse_args(argv)

    from caloforge.quant import Criterion, tune
    from caloforge.workflows import prepare_generator_tuning, tune_generator

    work = Path(args.output) if args.output else Path(tempfile.mkdtemp(prefix="bench_tuning_"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model: Path | None = None
    if not args.synthetic:
        if args.model:
            model = Path(args.model)
        else:
            try:
                from caloforge.gan.shipped import default_onnx_path

                model = default_onnx_path()
            except Exception:  # no shipped model in this installation
                model = None
    if model is None:
        model = synthetic_model(work / "synthetic.onnx")
    from caloforge.ovgraph import read_model

    inputs = {name for port in read_model(model).inputs for name in port.get_names()}
    prepared = None
    if {"z", "energy"} <= inputs:  # a generator: the runtime's graph, as `caloforge quantize`
        from caloforge.workflows.criterion import parse_criterion

        size = args.calibration_size or 200
        gan_criterion = Criterion(args.tolerance) if args.tolerance is not None else (
            parse_criterion(args.criterion) if args.criterion else None)
        prepared = prepare_generator_tuning(model, args.reference, calibration_size=size,
                                            reference_events=args.reference_events,
                                            criterion=gan_criterion, scan_events=args.scan_events)
        what = prepared.objective.description
        tolerance = args.tolerance
    else:
        size = args.calibration_size or 32
        calibration, evaluate, what = generic_objective(model, size)
        tolerance = 0.1 if args.tolerance is None else args.tolerance
    setup = time.perf_counter() - t0
    crit = (f"relative tolerance {tolerance:g}" if tolerance is not None else
            f"criterion of {len(prepared.objective.criterion) if prepared else 0} metrics")
    print(f"model {model}\nmetric: {what}; calibration {size}; {crit}; "
          f"objective set-up {setup:.1f} s")
    print(f"{'strategy':9s} {'trials':>6s} {'evals':>6s} {'probes':>6s} {'wall s':>7s} "
          f"{'pass':>5s} {'speed-up':>8s} {'INT8 FLOPs':>10s} {'limiting (final)':>18s} "
          f"{'limited the search':>18s}  best configuration")
    for name in args.strategies.split(","):
        out = work / name
        t1 = time.perf_counter()
        kw = {"latency_batch": args.latency_batch, "export_qdq": False, "report": True,
              "progress": lambda msg: None}
        if prepared is not None:
            res = tune_generator(out, strategy=name, prepared=prepared, **kw).result
        else:
            res = tune(model, calibration, evaluate, Criterion(tolerance or 0.1), name, out, **kw)
        wall = time.perf_counter() - t1
        share = f"{res.best.int8_share:.0%}" if res.best and res.best.int8_share is not None else "-"
        speed = f"{res.speedup:.2f}x" if res.speedup else "-"
        limiting = (res.best.limiting if res.best else "") or "-"
        print(f"{name:9s} {len(res.trials) + len(res.probes):6d} {res.evaluations_run:6d} "
              f"{res.probes_run:6d} {wall:7.1f} {'yes' if res.passed else 'no':>5s} {speed:>8s} "
              f"{share:>10s} {limiting:>18s} {res.limited_by or '-':>18s}  "
              f"{res.best.config.summary() if res.best else '-'}")
        sys.stdout.flush()
    print(f"outputs in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
