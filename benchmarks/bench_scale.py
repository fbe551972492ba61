"""Throughput of Dask productions: showers/s in-process and with 1 and 2 local workers, and the
fixed cost per shard (write + checksum + sidecar + scheduling) measured with a null producer.

    python benchmarks/bench_scale.py                  # MC, and the GAN if the runtime is there
    python benchmarks/bench_scale.py --events 1024 --shard-size 128 --json out.json

The cluster start-up time is reported apart (it is paid once per production); the showers/s
are measured on a started cluster. Results are written to docs/scale.md by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from caloforge.scale import ProducerSpec, produce
from caloforge.scale.production import available_cores, local_cluster

# Run as a script, this file's folder is on sys.path, and the spawned workers inherit it, so
# they import the null producer as "bench_scale:make_null".

GRID = (25, 25, 25)


def make_null(**_: object):
    """A producer that costs nothing: empty showers (measures the per-shard overhead)."""

    def null(energies: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((len(energies), *GRID), np.float32), energies

    return null


def run(spec: ProducerSpec, n: int, shard: int, workers: int, tmp: Path, tag: str) -> dict:
    out = tmp / tag
    kw = {"seed": 1, "shard_size": shard, "energy_range": (10.0, 500.0)}
    if workers == 0:
        _warm(spec.to_json())
        t0 = time.perf_counter()
        s = produce(out, n, spec, workers=0, **kw)
        startup = 0.0
    else:
        t0 = time.perf_counter()
        with local_cluster(workers) as client:
            startup = time.perf_counter() - t0
            # warm each worker's producer cache (model compile / MC tables) outside the timing
            client.run(_warm, spec.to_json())
            t0 = time.perf_counter()
            s = produce(out, n, spec, client=client, **kw)
    wall = time.perf_counter() - t0
    sides = [json.loads(p.read_text()) for p in sorted((out / "shards").glob("*.json"))]
    task_s = sum(sum(r["seconds"].values()) for r in sides)
    produce_s = sum(r["seconds"]["produce"] for r in sides)
    return {
        "producer": str(spec), "workers": workers, "events": n, "shard_size": shard,
        "shards": s.n_shards, "wall_s": round(wall, 3), "startup_s": round(startup, 2),
        "showers_per_s": round(n / wall, 1),
        "producer_ms_per_shower": round(1000 * produce_s / n, 2),
        "per_shard_write_checksum_s": round((task_s - produce_s) / len(sides), 4),
        "per_shard_overhead_s": round((wall * max(workers, 1) - produce_s) / len(sides), 4),
    }


def _warm(spec_json: dict) -> None:
    from caloforge.scale import ProducerSpec, load_producer

    load_producer(ProducerSpec.from_json(spec_json))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=512)
    ap.add_argument("--shard-size", type=int, default=64)
    ap.add_argument("--gan-events", type=int, default=256)
    ap.add_argument("--no-gan", action="store_true")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    print(f"# {os.uname().nodename}: {available_cores()} cores, load {os.getloadavg()[0]:.1f}",
          flush=True)
    cases = []
    for w in (0, 1, 2):
        cases.append((ProducerSpec("bench_scale:make_null"), args.events, w))
    for w in (0, 1, 2):
        cases.append((ProducerSpec.mc(), args.events, w))
    if not args.no_gan:
        try:
            import caloforge.runtime  # noqa: F401
        except ImportError:
            print("# no caloforge.runtime: GAN skipped")
        else:
            # in-process: the runtime picks streams/threads for the whole machine ("auto");
            # on workers: one single-threaded stream each, as a Dask worker has one core
            cases.append((ProducerSpec.gan(), args.gan_events, 0))
            for w in (1, 2):
                cases.append((ProducerSpec.gan(streams=1, threads=1), args.gan_events, w))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (spec, n, workers) in enumerate(cases):
            row = run(spec, n, args.shard_size, workers, Path(tmp), f"c{i}")
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"# load after: {os.getloadavg()[0]:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
