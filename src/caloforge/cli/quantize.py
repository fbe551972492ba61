"""``caloforge quantize``: accuracy-driven mixed-precision tuning of the generator."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from caloforge.cli._common import positive_int

if TYPE_CHECKING:  # pragma: no cover
    from caloforge.quant import Criterion
    from caloforge.workflows.criterion import MetricSpec


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "quantize",
        help="tune a mixed INT8/BF16/FP32 generator that keeps the physics metric",
        description="Find the fastest mixed-precision (per layer INT8 / BF16 / FP32) version of the "
                    "generator whose physics stays within the tolerances of the FP32 model's "
                    "(default criterion: the 3DGAN metric within 1%%; per energy 6-420 GeV the "
                    "calibrated response within 0.5%%, its width within 5%%, the hits within 2%%; "
                    "the paired FPD within the FP32-vs-FP32 floor). Writes model.xml/.bin (OpenVINO IR), model_qdq.onnx (if feasible), "
                    "history.jsonl, report.md/.png and result.json into DIR. Exit code 3 when no "
                    "configuration meets the criterion (the best by metric is still saved).",
    )
    p.add_argument("--model", metavar="MODEL.onnx",
                   help="FP32 generator (ONNX, inputs z and energy); default: the shipped model "
                        "(or the one in $CALOFORGE_DEFAULT_MODEL_DIR)")
    p.add_argument("--output", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--strategy", default=None, metavar="NAME",
                   help="search strategy: basic, ranked (default), pareto")
    p.add_argument("--criterion", action="append", default=None, metavar="NAME:TOL",
                   help="a metric of the criterion (repeatable; replaces the default criterion): "
                        "NAME 3dgan, response, width, hits (every energy) or response@6GeV (one "
                        "energy), fpd, or 'default'; TOL 1%% (relative to FP32), 0.005 or "
                        "0.005abs (absolute), floor (fpd: the FP32-vs-FP32 floor). "
                        "Later entries override earlier ones")
    p.add_argument("--criterion-file", metavar="FILE.toml|.json",
                   help="criterion file: metric = [{name = \"3dgan\", tolerance = \"1%%\"}, ...]; "
                        "--criterion entries are added after it")
    p.add_argument("--tolerance", type=float, default=None,
                   help="the 3DGAN metric alone, within this tolerance of FP32 (0.01 = 1%% "
                        "with --relative); instead of --criterion")
    sense = p.add_mutually_exclusive_group()
    sense.add_argument("--relative", dest="relative", action="store_true", default=True,
                       help="--tolerance is a fraction of the FP32 metric (default)")
    sense.add_argument("--absolute", dest="relative", action="store_false",
                       help="--tolerance is in the metric's units")
    p.add_argument("--higher-is-better", action="store_true",
                   help="with --tolerance: the metric grows with quality (the 3DGAN metric does not)")
    p.add_argument("--scan-events", type=positive_int, default=400, metavar="N",
                   help="showers per energy of the per-energy metrics and FPD (default 400)")
    p.add_argument("--reference", metavar="REF.h5",
                   help="reference showers for the metric; default: a GFlash MC sample at "
                        "50-500 GeV (--reference-events events)")
    p.add_argument("--reference-events", type=positive_int, default=None, metavar="N",
                   help="reference events used (default 2000 from a file, 700 simulated)")
    p.add_argument("--calibration-size", type=positive_int, default=200, metavar="N",
                   help="calibration events: latent noise x energies over the trained range (default 200)")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="stop the search after S seconds (best so far is kept)")
    p.add_argument("--max-trials", type=positive_int, default=None, metavar="N",
                   help="at most N metric evaluations (history included)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted tuning in DIR without repeating trials")
    p.add_argument("--latency-batch", type=positive_int, default=32, metavar="B",
                   help="batch size for the latency measurements (default 32)")
    p.add_argument("--preset", choices=("performance", "mixed"), default=None,
                   help="NNCF preset: symmetric (performance) or asymmetric (mixed) activations; "
                        "default: try both")
    p.add_argument("--range-estimator", choices=("minmax", "mean_minmax", "histogram"), default=None,
                   help="activation range estimator; default: try minmax, histogram and NNCF's "
                        "mean_minmax, keep the best")
    p.add_argument("--bias-correction", action="store_true", help="NNCF fast bias correction")
    p.add_argument("--no-bf16", action="store_true", help="only INT8 and FP32 layers")
    p.add_argument("--no-qdq", action="store_true", help="skip the QDQ ONNX export")
    p.add_argument("--no-rewrite", action="store_true",
                   help="tune the ONNX graph as imported instead of the runtime's exact "
                        "upsample-convolution rewrite (slower model)")
    p.add_argument("--seed", type=int, default=0, help="seed of calibration and evaluation noise")
    p.add_argument("--quiet", action="store_true", help="only the final line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import math
    from pathlib import Path

    from caloforge.cli._flags import reworded
    from caloforge.errors import NoPassError, UserError
    from caloforge.ovgraph import read_model
    from caloforge.quant import DEFAULT_STRATEGY, FP32, INT8, Criterion, available
    from caloforge.quant.params import candidate_sets
    from caloforge.workflows import tune_generator

    if args.tolerance is not None and not (math.isfinite(args.tolerance) and args.tolerance >= 0):
        raise UserError(f"--tolerance {args.tolerance!r}: must be a finite number >= 0")
    if args.tolerance is not None and (args.criterion or args.criterion_file):
        raise UserError("--tolerance: the 3DGAN metric alone; give it as --criterion 3dgan:TOL "
                        "together with other --criterion metrics")
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        raise UserError(f"--timeout {args.timeout!r}: must be a positive number of seconds")
    strategy = args.strategy or DEFAULT_STRATEGY
    if strategy not in available():
        raise UserError(f"--strategy {strategy!r}: choose from {', '.join(available())}")
    from caloforge.iocheck import check_io

    check_io(inputs=[args.model, args.reference, args.criterion_file],
             dirs={args.output: ("model.xml", "model.bin", "model_qdq.onnx", "history.jsonl",
                                 "report.*", "result.json", "best.json")})
    model = None
    if args.model is not None:
        model = Path(args.model)
        if model.is_dir():
            raise UserError(f"{model}: is a directory, expected a model file (.onnx)")
        if not model.is_file():
            raise UserError(f"{model}: no such model file")
        read_model(model)  # a bad model file fails now, not after the reference is made
    if args.reference is not None and not Path(args.reference).exists():
        raise UserError(f"{args.reference}: no such reference file")
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    if out.parent.exists() and not out.parent.is_dir():
        raise UserError(f"{out}: {out.parent} is not a directory")
    criterion = _criterion(args)
    say = (lambda msg: None) if args.quiet else print
    try:
        tuning = tune_generator(
            args.output, model, args.reference, criterion=criterion, strategy=strategy,
            rewrite=not args.no_rewrite, calibration_size=args.calibration_size,
            reference_events=args.reference_events or (2000 if args.reference else 700),
            seed=args.seed, scan_events=args.scan_events, resume=args.resume, timeout_s=args.timeout, max_trials=args.max_trials,
            precisions=(INT8, FP32) if args.no_bf16 else None,
            params=candidate_sets(args.preset, args.range_estimator, args.bias_correction),
            latency_batch=args.latency_batch, export_qdq=not args.no_qdq, progress=say)
    except UserError as exc:  # the library names parameters; say which flag
        raise reworded(exc, {"resume=True": "--resume", "calibration_size": "--calibration-size",
                             "layers": "--layers", "output_dir": "--output",
                             "scan_events": "--scan-events", "criterion": "--criterion"}) from None
    result = tuning.result
    assert result is not None
    if not args.quiet:
        print(f"outputs in {result.output_dir}: model.xml/.bin, report.md, history.jsonl"
              + (", model_qdq.onnx" if result.qdq_onnx_path else f" (QDQ ONNX {result.qdq_status or 'not exported'})"))
    if not result.passed:
        what = criterion.describe(result.baseline_metric) if isinstance(criterion, Criterion) \
            else f"closest: {result.best.limiting if result.best else '?'}"
        raise NoPassError(f"no configuration met the criterion ({what}); "
                          f"saved the best by metric to {result.model_path}")
    if args.quiet:
        print(result.summary())
    return 0


def _criterion(args: argparse.Namespace) -> Criterion | list[MetricSpec] | None:
    """A one-metric Criterion (--tolerance), the specs of --criterion-file / --criterion, or
    None (the default criterion)."""
    from caloforge.quant import Criterion
    from caloforge.workflows.criterion import load_criterion_file, parse_criterion

    if args.tolerance is not None:
        return Criterion(args.tolerance, relative=args.relative,
                         higher_is_better=args.higher_is_better)
    specs = load_criterion_file(args.criterion_file) if args.criterion_file else []
    if args.criterion:
        specs += parse_criterion(args.criterion, "--criterion")
    return specs or None
