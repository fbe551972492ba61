"""``caloforge validate``: compare a candidate shower file with a reference (and a floor)."""

from __future__ import annotations

import argparse

from caloforge.cli._common import positive_int, seed_int


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "validate",
        help="physics validation of a shower file against a reference",
        description="Compare CANDIDATE showers with REFERENCE showers: the 3DGAN shape metric, "
                    "separation powers, FPD/KPD, a classifier AUC and, per primary energy, the "
                    "layer-calibrated response and resolution, hits and shower maximum; each "
                    "next to its MC-vs-MC floor and their ratio, with a one-line verdict. Writes "
                    "metrics.json, PNG plots and report.md into the output folder.",
    )
    p.add_argument("--reference", required=True, metavar="REF.h5", help="reference shower file")
    p.add_argument("--candidate", required=True, metavar="CAND.h5", help="candidate shower file")
    p.add_argument("--output", required=True, metavar="DIR", help="output folder (created)")
    fl = p.add_mutually_exclusive_group()
    fl.add_argument("--floor", metavar="REF2.h5",
                    help="a second, independent reference sample: its metrics against REF are the "
                         "statistical floor shown next to the candidate's (default: for a "
                         "caloforge MC reference, simulated here at REF's energies with another "
                         "seed)")
    fl.add_argument("--no-floor", action="store_true",
                    help="do not simulate a floor when --floor is not given (no ratios, no verdict)")
    p.add_argument("--floor-seed", type=seed_int, metavar="N",
                   help="seed of the simulated floor (default: REF's seed + 1, skipping "
                        "CANDIDATE's seed)")
    p.add_argument("--max-events", type=positive_int, metavar="N",
                   help="use only the first N events of each file")
    p.add_argument("--hit-threshold", type=float, default=3e-4, metavar="GEV",
                   help="cell threshold for the hit multiplicity in GeV (default 3e-4)")
    p.add_argument("--seed", type=int, default=0, help="seed for FPD/KPD subsampling and the classifier")
    p.add_argument("--raw-cells", action="store_true",
                   help="compare the files as they are (default: when CANDIDATE declares a cell "
                        "threshold, cells below it count as empty in every sample, as a readout "
                        "would)")
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
                   progress=not args.quiet, simulate_floor=not args.no_floor,
                   floor_seed=args.floor_seed, raw_cells=args.raw_cells)
    if not args.quiet:
        has_floor = res.get("floor_vs_reference") is not None
        print(f"{'metric':<54} {'candidate':>11}" + (f" {'floor':>11} {'ratio':>8}" if has_floor else ""))
        for r in res["verdict"]["rows"]:
            line = f"{r['label']:<54} {_num(r['value']):>11}"
            if has_floor:
                far = "  far" if r["far"] else ""
                line += f" {_num(r['floor']):>11} {_num(r['ratio']):>8}{far}"
            print(line)
        groups = res["candidate_vs_reference"].get("classifier_auc_groups")
        if groups:
            floor = (res.get("floor_vs_reference") or {}).get("classifier_auc_groups") or {}
            print("classifier AUC per feature group: " + ", ".join(
                f"{k} {_num(v['auc'])}" + (f" (floor {_num(floor[k]['auc'])})" if k in floor
                                           else "") for k, v in groups.items()))
        print(f"verdict: {res['verdict']['line']}")
        print(f"wrote {args.output}/metrics.json, report.md and plots")
    return 0


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"
