"""``caloforge generate``: showers from the GAN into an HDF5 file (same layout as simulate)."""

from __future__ import annotations

import argparse
import sys
import warnings

from caloforge.cli._common import (
    add_energy_arguments,
    parse_energies,
    parse_range,
    positive_int,
    seed_int,
)
from caloforge.cli._scale import add_scale_arguments, produce_from_args, wants_scale


def _streams(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or an integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "generate", help="generate showers with the GAN (OpenVINO, fp32/bf16/int8)",
        description="Generate showers with the conditional 3D GAN into an HDF5 file in the "
                    "3DGAN layout (as 'caloforge simulate' writes). Event i depends only on "
                    "(seed, i) and its energy: batch size and streams do not change the output.")
    add_energy_arguments(p, default_range="2:500")
    p.add_argument("-n", "--events", type=positive_int, required=True, help="number of showers")
    p.add_argument("--model", help="generator model (.onnx or OpenVINO IR .xml; default: the "
                                   "shipped model)")
    p.add_argument("--precision", choices=("fp32", "bf16", "int8"), default="fp32",
                   help="inference precision (int8 quantizes a float model with NNCF first)")
    p.add_argument("--backend", choices=("openvino", "torch", "onnxruntime"), default="openvino")
    p.add_argument("--streams", type=_streams, default="auto",
                   help="inference streams, or 'auto' to probe the fastest layout (default)")
    p.add_argument("--threads", type=positive_int, help="threads per stream (default: cores / "
                                                         "streams)")
    p.add_argument("--batch-size", type=positive_int, help="events per inference request")
    p.add_argument("--seed", type=seed_int, default=0, help="random seed (0..2**64-1; default 0)")
    p.add_argument("--compression", type=int, default=None, choices=range(0, 10),
                   metavar="0-9", help="gzip level of the output (default 1)")
    p.add_argument("-o", "--output", required=True,
                   help="output HDF5 file (a production directory with --workers/--scheduler/--shard-size)")
    p.add_argument("--allow-extrapolation", action="store_true",
                   help="allow energies outside the model's trained range (with a warning)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_scale_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from caloforge.cli._flags import reworded
    from caloforge.errors import UserError
    from caloforge.gan.shipped import DEFAULT_DIR, ONNX_NAME, WEIGHTS_NAME
    from caloforge.iocheck import check_io
    from caloforge.runtime.generate import (
        DEFAULT_COMPRESSION,
        check_energies,
        generate_to_file,
        trained_range,
    )

    # never write over the model (a tuned model.xml brings its model.bin)
    models = [args.model] if args.model else [DEFAULT_DIR / ONNX_NAME, DEFAULT_DIR / WEIGHTS_NAME]
    if wants_scale(args):
        check_io(inputs=models, dirs={args.output: ("manifest.json", "shards")})
    else:
        check_io(inputs=models, files={args.output: "hdf5"})
    energies = parse_energies(args.energies) if args.energies else None
    energy_range = None if energies is not None else parse_range(args.energy_range)
    # Refuse bad energies before compiling (compiling int8 / probing streams takes seconds).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            check_energies(energies if energies is not None else list(energy_range),
                           trained_range(args.model), args.allow_extrapolation,
                           "--energies" if energies is not None else "--energy-range")
        except UserError as exc:  # the library names its parameter
            raise reworded(exc, {"allow_extrapolation=True": "--allow-extrapolation"}) from None
    if wants_scale(args):
        from caloforge.scale import ProducerSpec

        spec = ProducerSpec.gan(args.model, args.precision, backend=args.backend,
                                streams=args.streams, threads=args.threads,
                                batch_size=args.batch_size,
                                allow_extrapolation=args.allow_extrapolation)
        return produce_from_args(args, spec, n_events=args.events, out=args.output, seed=args.seed,
                                 energies=energies, energy_range=energy_range,
                                 progress=not args.quiet)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # library noise (torch, nncf); ours are printed below
        from caloforge.runtime import compile_model

    def show(message, category, *rest) -> None:  # type: ignore[no-untyped-def]
        if category.__name__ == "ExtrapolationWarning" or str(message).startswith("bf16"):
            print(f"caloforge generate: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        gen = compile_model(args.model, args.precision, backend=args.backend,
                            streams=args.streams, threads=args.threads,
                            batch_size=args.batch_size)
        auto = gen.info.get("auto")
        if auto and not args.quiet:
            print(f"streams auto: picked {auto['picked']} (streams x threads, batch)",
                  file=sys.stderr)
        summary = generate_to_file(
            args.output, args.events, energies=energies, energy_range=energy_range, model=gen,
            seed=args.seed, allow_extrapolation=args.allow_extrapolation,
            compression=DEFAULT_COMPRESSION if args.compression is None else args.compression,
            progress=not args.quiet,
        )
    print(f"wrote {summary['events']} showers to {summary['path']} in {summary['seconds']:.1f} s "
          f"({summary['showers_per_s']:.0f} showers/s, {summary['precision']}, "
          f"{summary['layout']})")
    return 0
