"""The ``caloforge`` command line: a thin shell over the library API.

Each sub-command lives in its own module in this package and exposes
``register(subparsers)`` (adds its parser and sets ``func``). Modules import their heavy
dependencies (torch, openvino, ...) inside the command function, so ``caloforge --help``
stays fast. User errors (:class:`caloforge.errors.CaloforgeError`) become one line on
stderr and the error's exit code (2 for bad input); no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from caloforge import __version__
from caloforge.cli._common import OneLineParser, stdout_closed
from caloforge.errors import CaloforgeError

# Sub-command modules, in the order they appear in --help (pipeline order).
COMMAND_MODULES = (
    "simulate",
    "info",
    "validate",
    "train",
    "generate",
    "bench",
    "quantize",
    "demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="caloforge",
        description="Calorimeter shower simulation: Monte Carlo, GAN, validation, INT8 tuning.",
    )
    parser.add_argument("--version", action="version", version=f"caloforge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"caloforge.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's final flush
        return code
    except BrokenPipeError:
        return stdout_closed()
    except CaloforgeError as exc:
        print(f"caloforge {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"caloforge {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
