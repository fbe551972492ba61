"""``caloforge simulate``: GFlash Monte Carlo showers into an HDF5 file (atomic, streaming)."""

from __future__ import annotations

import argparse
import sys

from caloforge.cli._common import add_energy_arguments, parse_energies, parse_range, seed_int
from caloforge.cli._scale import add_scale_arguments, produce_from_args, wants_scale
from caloforge.errors import UserError
from caloforge.iocheck import check_io


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="simulate electron showers with the GFlash Monte Carlo into an HDF5 file",
        description="Simulate electron showers in the CLIC W/Si ECAL (25x25x25 cells) with the "
        "Grindhammer-Peters (GFlash) parametrisation and write them atomically to an HDF5 file. "
        "Energies in GeV; supported range 1-1000 GeV.",
    )
    p.add_argument("--n-events", "-n", type=int, required=True, help="number of showers (> 0)")
    add_energy_arguments(p)
    p.add_argument("--seed", type=seed_int, default=0, help="random seed (0..2**64-1; default 0)")
    p.add_argument("--output", "-o", required=True,
                   help="output HDF5 file (a production directory with --workers/--scheduler/--shard-size)")
    p.add_argument("--layout", choices=("3dgan", "calochallenge"), default="3dgan",
                   help="file layout (default 3dgan: ECAL + energy in GeV)")
    p.add_argument("--chunk-size", type=int, default=1000,
                   help="events simulated and written per block (default 1000; no effect on results)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_scale_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from caloforge.cli._flags import reworded
    from caloforge.mc import simulate_to_file

    if args.n_events <= 0:
        raise UserError(f"{args.output}: --n-events must be positive, got {args.n_events}")
    if args.chunk_size <= 0:
        raise UserError(f"{args.output}: --chunk-size must be positive, got {args.chunk_size}")
    if args.seed < 0:
        raise UserError(f"--seed {args.seed}: must be a non-negative integer")
    energies = parse_energies(args.energies) if args.energies else None
    energy_range = None if energies is not None else parse_range(args.energy_range)
    progress = not args.no_progress and sys.stderr.isatty()
    if wants_scale(args):
        check_io(dirs={args.output: ("manifest.json", "shards")})
    else:
        check_io(files={args.output: "hdf5"})
    if wants_scale(args):
        return produce_from_args(args, "mc", n_events=args.n_events, out=args.output, seed=args.seed,
                                 energies=energies, energy_range=energy_range, layout=args.layout,
                                 progress=progress)
    try:
        res = simulate_to_file(
            args.output, args.n_events, energy_range=energy_range, energies=energies,
            seed=args.seed, chunk_size=args.chunk_size, progress=progress, layout=args.layout,
        )
    except UserError as exc:
        raise reworded(exc, {"energies": "--energies", "energy_range": "--energy-range"}) from None
    spec = (f"energies {args.energies} GeV (cycled)" if energies is not None
            else f"energies uniform in {energy_range[0]:g}-{energy_range[1]:g} GeV")  # type: ignore[index]
    print(
        f"Wrote {res['n_events']} electron showers to {res['path']} ({res['layout']} layout) with the "
        f"GFlash Monte Carlo in the {res['detector']}, seed {res['seed']}, {spec} "
        f"(drawn {res['energy_min']:.4g}-{res['energy_max']:.4g} GeV); mean E_vis/E = "
        f"{res['mean_visible_fraction']:.5f}; {res['seconds']:.1f} s "
        f"({res['showers_per_s']:.0f} showers/s)."
    )
    return 0
