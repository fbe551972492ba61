"""``caloforge demo``: the whole chain on the shipped model and the built-in MC, with a report."""

from __future__ import annotations

import argparse

from caloforge.cli._common import positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="run the whole chain (MC -> GAN -> validate -> INT8 tuning -> bench) "
                     "and write a report",
        description="Simulate an MC reference, generate with the shipped GAN in FP32, validate, "
                    "tune INT8 under the physics criterion, validate the tuned model, benchmark "
                    "FP32 vs INT8 vs multistream and the MC, and write OUTPUT/report.md (with the "
                    "case study's two figures) and OUTPUT/demo.json (every number). Default: "
                    "~5-8 min on 2 cores; --quick: about a minute.")
    p.add_argument("--output", default="caloforge-demo", metavar="DIR",
                   help="output folder (default caloforge-demo)")
    p.add_argument("--quick", action="store_true", help="tiny samples and short tuning (CI)")
    p.add_argument("--n-events", type=positive_int, metavar="N",
                   help="events per sample: MC reference, MC floor, each GAN sample "
                        "(default 3500, quick 140; at least 140 = 20 per metric bin)")
    p.add_argument("--seed", type=int, default=0, help="seed of the MC and the GAN noise (default 0)")
    p.add_argument("--skip-tuning", action="store_true",
                   help="no tuning: use the fully quantized INT8 model")
    p.add_argument("--tune-timeout", type=float, metavar="S",
                   help="stop the INT8 search after S seconds (default 150, quick 20)")
    p.add_argument("--max-trials", type=positive_int, metavar="N",
                   help="at most N tuning trials (default: no limit, quick 2)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted demo in DIR: skip the stages it completed")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


#: Library parameter names (caloforge.demo) -> this command's flags, for its error messages.
FLAGS = {"n_events": "--n-events", "seed": "--seed", "tune_timeout_s": "--tune-timeout",
         "tune_max_trials": "--max-trials", "output_dir": "--output", "resume=True": "--resume",
         "resume=False": "no --resume"}


def run(args: argparse.Namespace) -> int:
    from caloforge.cli._flags import reworded
    from caloforge.demo import run_demo
    from caloforge.errors import UserError
    from caloforge.iocheck import check_io

    check_io(dirs={args.output: ()})  # the demo reads no user file
    overrides = {}
    if args.tune_timeout is not None:
        overrides["tune_timeout_s"] = args.tune_timeout
    if args.max_trials is not None:
        overrides["tune_max_trials"] = args.max_trials
    try:
        run_demo(args.output, quick=args.quick, n_events=args.n_events, seed=args.seed,
                 skip_tuning=args.skip_tuning, resume=args.resume, progress=not args.no_progress,
                 **overrides)
    except UserError as exc:  # the library names parameters; say which flag
        raise reworded(exc, FLAGS) from None
    return 0
