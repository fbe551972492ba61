"""``caloforge validate``: compare a candidate shower file with a reference (and a floor)."""

from __future__ import annotations

import argparse

from caloforge.cli._common import positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "validate",
        help="physics validation of a shower file against a reference",
        description="Compare CANDIDATE showers with REFERENCE showers: the 3DGAN shape metric, "
                    "separation powers, FPD/KPD and a classifier AUC; writes metrics.json, PNG "
                    "plots and report.md into the output folder.",
    )
    p.add_argument("--reference", required=True, metavar="REF.h5", help="reference shower file")
    p.add_argument("--candidate", required=True, metavar="CAND.h5", help="candidate shower file")
    p.add_argument("--output", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--floor", metavar="REF2.h5",
                   help="a second, independent reference sample: its metrics against REF are the "
                        "statistical floor shown next to the candidate's")
    p.add_argument("--max-events", type=positive_int, metavar="N",
                   help="use only the first N events of each file")
    p.add_argument("--hit-threshold", type=float, default=3e-4, metavar="GEV",
                   help="cell threshold for the hit multiplicity in GeV (default 3e-4)")
    p.add_argument("--seed", type=int, default=0, help="seed for FPD/KPD subsampling and the classifier")
    p.add_argument("--no-classifier", action="store_true", help="skip the classifier test")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from caloforge.iocheck import check_io
    from caloforge.physics.validate import validate

    check_io(inputs=[args.reference, args.candidate, args.floor],
             dirs={args.output: ("metrics.json", "report.md", "*.png")})
    res = validate(args.reference, args.candidate, args.output, floor_path=args.floor,
                   max_events=args.max_events, hit_threshold=args.hit_threshold, seed=args.seed,
                   classifier=not args.no_classifier, plots=not args.no_plots,
                   progress=not args.quiet)
    if not args.quiet:
        c = res["candidate_vs_reference"]
        f = res.get("floor_vs_reference") or {}

        def show(key: str) -> str:
            v, fv = c.get(key), f.get(key)
            s = "-" if v is None else f"{v:.4g}"
            return s + ("" if not f else f" (floor {'-' if fv is None else f'{fv:.4g}'})")

        print(f"3DGAN metric {show('shape_metric')}, mean separation power "
              f"{show('sep_power_mean')}, FPD {show('fpd')}, AUC {show('classifier_auc')}")
        print(f"wrote {args.output}/metrics.json, report.md and plots")
    return 0
