"""``caloforge info``: summary of a shower file (streamed; works on files bigger than memory)."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "info", help="summarise a shower HDF5 file (3DGAN or CaloChallenge layout)",
        description="Print events, layout, grid, energy range, mean E_vis/E and the provenance "
        "attributes of a shower file. Reads the file in chunks.",
    )
    p.add_argument("file", help="HDF5 shower file")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--chunk-size", type=int, default=1000, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from caloforge.data.summary import format_summary, summarize

    s = summarize(args.file, chunk_size=max(1, args.chunk_size))
    if args.json:
        print(json.dumps(s, indent=2, sort_keys=True, default=str))
    else:
        print(format_summary(s))
    return 0
