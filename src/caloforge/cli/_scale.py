"""Command-line glue for :mod:`caloforge.scale`: ``--scheduler ADDRESS | --workers N`` and
``--shard-size K`` for any command (argparse lives in ``cli/``, not in the library).

Wiring a command (two lines)::

    add_scale_arguments(parser)                       # in register()
    if wants_scale(args):                             # in run(), before the one-file path
        return produce_from_args(args, "mc", n_events=args.n_events, out=args.output, ...)
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from caloforge.scale.plan import DEFAULT_SHARD_SIZE
from caloforge.scale.producers import ProducerSpec

#: scale's parameter names -> the flags of this module's options.
FLAGS = {"shard_size": "--shard-size", "workers": "--workers", "scheduler": "--scheduler",
         "compression": "--compression"}


def _count(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def add_scale_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--scheduler ADDRESS | --workers N`` and ``--shard-size K`` (a 'scale-out' group)."""
    group = parser.add_argument_group(
        "scale-out (Dask)", "with any of these, the output is a production directory "
                            "(DIR/manifest.json + DIR/shards/*.h5); rerun to resume")
    where = group.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="run on an existing Dask cluster: tcp://HOST:8786 or a scheduler file")
    where.add_argument("--workers", metavar="N", type=lambda t: _count(t, 0),
                       help="local Dask cluster with N worker processes (0: in this process)")
    group.add_argument("--shard-size", metavar="K", type=lambda t: _count(t, 1),
                       help=f"events per shard (default {DEFAULT_SHARD_SIZE})")


def wants_scale(args: argparse.Namespace) -> bool:
    """True if any scale-out option was given (then the output is a production directory)."""
    return any(getattr(args, k, None) is not None for k in ("scheduler", "workers", "shard_size"))


def produce_from_args(
    args: argparse.Namespace,
    producer: ProducerSpec | str,
    *,
    n_events: int,
    out: str,
    seed: int | None = None,
    energies: Any = None,
    energy_range: tuple[float, float] | None = None,
    layout: str = "3dgan",
    compression: int | str | None = None,
    progress: bool | None = None,
    quiet: bool = False,
) -> int:
    """Run :func:`caloforge.scale.produce` from parsed arguments, print a summary; exit code 0.

    ``progress``: a tqdm bar over showers (None: when stderr is a terminal); ``quiet``: no bar
    and no summary. ``compression`` None: ``args.compression`` if the command has it, else the
    producer's default.
    """
    from caloforge.cli._flags import reworded
    from caloforge.errors import UserError
    from caloforge.scale.production import produce

    if compression is None:
        compression = getattr(args, "compression", None)
    try:
        summary = produce(
            out, n_events, producer, seed=seed, shard_size=getattr(args, "shard_size", None),
            energies=energies, energy_range=energy_range, layout=layout,
            compression=compression,
            scheduler=getattr(args, "scheduler", None), workers=getattr(args, "workers", None),
            progress=not quiet and (sys.stderr.isatty() if progress is None else progress),
        )
    except UserError as exc:  # the library names parameters; say which flag
        raise reworded(exc, FLAGS) from None
    if not quiet:
        m = summary.manifest
        where = {"in-process": "in this process", "local": f"{summary.workers} local workers",
                 "scheduler": f"{summary.workers} workers at {getattr(args, 'scheduler', '')}",
                 "none": "nothing to do"}.get(summary.mode, summary.mode)
        rate = (f", {summary.showers_per_s:.1f} showers/s" if summary.computed else "")
        print(f"{summary.out_dir}: {m['n_events']} showers in {m['n_shards']} shards "
              f"({len(summary.computed)} computed, {len(summary.skipped)} already done; {where}; "
              f"{summary.wall_s:.1f} s{rate})")
        print(f"  energies {m['energy_min']:.4g}..{m['energy_max']:.4g} GeV, seed {m['seed']}, "
              f"manifest {summary.out_dir / 'manifest.json'}")
    return 0
