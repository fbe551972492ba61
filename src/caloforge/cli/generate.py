"""``caloforge generate``: showers from the GAN into an HDF5 file (same layout as simulate)."""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import cast

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


def _compression(text: str) -> int | str:
    from caloforge.data.codecs import CODEC_NAMES, parse_codec
    from caloforge.errors import UserError

    try:
        parse_codec(text)
    except UserError:
        raise argparse.ArgumentTypeError(
            f"expected a gzip level 0-9 or one of {', '.join(CODEC_NAMES)} (optionally "
            f"':LEVEL'), got {text!r}") from None
    return int(text) if text.strip().isdigit() else text


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a cell energy in GeV, got {text!r}") from None
    if not 0.0 <= value < 1.0:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"expected 0 <= GeV < 1, got {text}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "generate", help="generate showers with the GAN (OpenVINO, fp32/bf16/int8)",
        description="Generate showers with the conditional 3D GAN into an HDF5 file in the "
                    "3DGAN layout (as 'caloforge simulate' writes). Event i depends only on "
                    "(seed, i) and its energy: batch size and streams do not change the output.")
    add_energy_arguments(p, default_range="2:500")
    p.add_argument("-n", "--events", type=positive_int, required=True, help="number of showers")
    p.add_argument("--model", help="generator model (.onnx or OpenVINO IR .xml; default: the "
                                   "shipped model, or the one in $CALOFORGE_DEFAULT_MODEL_DIR)")
    p.add_argument("--precision", choices=("fp32", "bf16", "int8"), default=None,
                   help="inference precision (default: the model's own, from its manifest: "
                        "int8 for a quantized IR, else fp32; int8 quantizes a float model "
                        "once and caches it, see $CALOFORGE_CACHE)")
    p.add_argument("--backend", choices=("openvino", "torch", "onnxruntime"), default="openvino")
    p.add_argument("--streams", type=_streams, default="auto",
                   help="inference streams, or 'auto' to probe the fastest layout (default)")
    p.add_argument("--threads", type=positive_int, help="threads per stream (default: cores / "
                                                         "streams)")
    p.add_argument("--batch-size", type=positive_int, help="events per inference request")
    p.add_argument("--seed", type=seed_int, default=0, help="random seed (0..2**64-1; default 0)")
    p.add_argument("--compression", type=_compression, default=None,
                   metavar="0-9|lz4|blosc2-lz4|blosc2-zstd",
                   help="gzip level of the output (default 1; 0: none; any h5py reads it), or a "
                        "faster hdf5plugin codec (readers then need 'import hdf5plugin')")
    p.add_argument("--threshold", type=_threshold, default=None, metavar="GEV",
                   help="cells below this energy are written as exact zeros (default: the "
                        "model's cell threshold, 1e-6 GeV for the 3DGAN)")
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
    from caloforge.gan.shipped import ONNX_NAME, WEIGHTS_NAME, default_dir
    from caloforge.iocheck import check_io
    from caloforge.runtime.generate import (
        DEFAULT_COMPRESSION,
        check_energies,
        generate_to_file,
        small_run_layout,
        trained_range,
    )
    from caloforge.runtime.modelfile import model_precision

    # never write over the model (a tuned model.xml brings its model.bin)
    models = [args.model] if args.model else [default_dir() / ONNX_NAME, default_dir() / WEIGHTS_NAME]
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
            check_energies(energies if energies is not None
                           else list(cast("tuple[float, float]", energy_range)),
                           trained_range(args.model), args.allow_extrapolation,
                           "--energies" if energies is not None else "--energy-range")
        except UserError as exc:  # the library names its parameter
            raise reworded(exc, {"allow_extrapolation=True": "--allow-extrapolation",
                                 "allow_extrapolation": "--allow-extrapolation"}) from None
    precision = args.precision or model_precision(args.model)
    if wants_scale(args) and args.threshold is not None:
        raise UserError("--threshold: a production (--workers/--scheduler/--shard-size) uses "
                        "the model's own cell threshold; drop --threshold")
    if wants_scale(args):
        from caloforge.scale import ProducerSpec

        spec = ProducerSpec.gan(args.model, precision, backend=args.backend,
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
        warnings.showwarning = show  # type: ignore[assignment]
        streams, batch_size = small_run_layout(args.events, args.streams, args.batch_size,
                                               args.backend)
        try:
            gen = compile_model(args.model, precision, backend=args.backend, streams=streams,
                                threads=args.threads, batch_size=batch_size)
        except UserError as exc:
            raise reworded(exc, {"batch size": "--batch-size"}) from None
        auto = gen.info.get("auto")
        if auto and not args.quiet:
            print(f"streams auto: picked {auto['picked']} (streams x threads, batch)",
                  file=sys.stderr)
        summary = generate_to_file(
            args.output, args.events, energies=energies, energy_range=energy_range, model=gen,
            seed=args.seed, allow_extrapolation=args.allow_extrapolation,
            compression=DEFAULT_COMPRESSION if args.compression is None else args.compression,
            threshold=args.threshold, progress=not args.quiet,
        )
    print(f"wrote {summary['events']} showers to {summary['path']} in {summary['seconds']:.1f} s "
          f"({summary['showers_per_s']:.0f} showers/s, {summary['precision']}, "
          f"{summary['layout']})")
    return 0
