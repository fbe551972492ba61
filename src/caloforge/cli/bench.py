"""``caloforge bench``: inference speed of PyTorch / OpenVINO FP32 / BF16 / INT8, single vs
multistream, with the physics metric of each precision."""

from __future__ import annotations

import argparse
import sys

from caloforge.cli._common import positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench", help="benchmark inference: PyTorch vs OpenVINO FP32/BF16/INT8, streams",
        description="Time the shipped generator with PyTorch FP32 eager and OpenVINO "
                    "FP32/BF16/INT8 at several batch sizes and stream layouts (in rotation, "
                    "medians), plus the caloforge MC; prints a table, writes JSON and a PNG.")
    p.add_argument("--quick", action="store_true", help="short run (CI / demo)")
    p.add_argument("--model", help="ONNX/IR model (default: the shipped model, or the one in "
                                    "$CALOFORGE_DEFAULT_MODEL_DIR)")
    p.add_argument("--tuned", metavar="MODEL.xml",
                   help="also time a tuned model (caloforge quantize's model.xml) at the same "
                        "batches and layouts, and print its speed-up over FP32")
    p.add_argument("--batches", help="comma-separated batch sizes (default 1,32,128; quick 1,32)")
    p.add_argument("--rounds", type=positive_int, help="timing rounds (default 5; quick 3)")
    p.add_argument("--no-mc", action="store_true", help="skip the MC timing")
    p.add_argument("--json", default="bench.json", help="output JSON (default bench.json)")
    p.add_argument("--plot", default="bench.png", help="output bar chart (default bench.png)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import warnings
    from pathlib import Path

    from caloforge.atomic import write_json
    from caloforge.errors import UserError
    from caloforge.workflows import format_table, plot, run_bench

    if args.tuned is not None and not Path(args.tuned).is_file():
        raise UserError(f"{args.tuned}: no such model file")
    from caloforge.iocheck import check_io

    check_io(inputs=[args.model, args.tuned], files={args.json: "json", args.plot: "png"})
    batches = None
    if args.batches:
        try:
            batches = tuple(int(b) for b in args.batches.split(",") if b.strip())
        except ValueError:
            raise UserError(f"--batches {args.batches!r}: expected integers like 1,32") from None
        if not batches or min(batches) < 1:
            raise UserError(f"--batches {args.batches!r}: batch sizes must be >= 1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = run_bench(args.quick, model=args.model, batches=batches, rounds=args.rounds,
                           mc_seconds=0.0 if args.no_mc else None, tuned=args.tuned,
                           log=lambda s: print(f"[bench] {s}", file=sys.stderr, flush=True))
    print(format_table(report))
    write_json(args.json, report.to_json())
    plot(report, args.plot)
    print(f"wrote {args.json} and {args.plot}")
    return 0
