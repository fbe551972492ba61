"""The worker side of a production: :func:`run_shard` makes and writes one shard.

Each shard is one Dask task that writes its own files atomically, so a task that dies half-way
(exception, worker process killed) leaves nothing behind under a final name.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from caloforge.data import manifest as mf
from caloforge.data.writer import ShowerWriter
from caloforge.errors import CaloforgeError, UserError
from caloforge.scale.plan import ShardTask
from caloforge.scale.producers import load_producer


class ProductionError(CaloforgeError):
    """A shard failed for good (after retries), or the cluster was lost (exit code 1)."""



def run_shard(task: ShardTask) -> dict[str, Any]:
    """Produce and write shard ``task.index``; returns its sidecar record. Runs on a worker.

    The producer comes from the per-process cache, so a worker builds it once.
    """
    shards = Path(task.out_dir) / mf.SHARD_DIR
    if not shards.is_dir():
        raise UserError(f"{shards}: not visible on worker host {socket.gethostname()}: the "
                        "production directory must be on a file system shared by all workers")
    t0 = time.perf_counter()
    producer = load_producer(task.producer)
    t1 = time.perf_counter()
    energies_in = task.draw_energies(producer)
    if task.seeding == "event":
        images, energies = producer(energies_in, task.seed, first_event=task.first_event)
    else:
        images, energies = producer(energies_in, task.seed)
    t2 = time.perf_counter()
    path = mf.shard_path(task.out_dir, task.index)
    grid = tuple(int(g) for g in np.shape(images)[1:])
    attrs = {
        "production_fingerprint": task.fingerprint,
        "shard_index": task.index,
        "first_event": task.first_event,
        "seed": task.seed,
        "producer": task.producer.to_json(),
    }
    with ShowerWriter(path, grid=grid, layout=task.layout, attrs=attrs,
                      compression=task.compression) as writer:
        img = np.asarray(images, dtype=np.float32)
        en = np.asarray(energies, dtype=np.float64).reshape(-1)
        if img.shape[0] != task.n_events or en.shape[0] != task.n_events:
            raise ProductionError(f"shard {task.index}: producer {task.producer} returned "
                                  f"{img.shape[0]} showers / {en.shape[0]} energies for "
                                  f"{task.n_events} requested")
        if not np.isfinite(img).all() or (img < 0).any():
            raise ProductionError(f"shard {task.index}: producer {task.producer} returned NaN, "
                                  "infinite or negative cell energies")
        writer.append(img, en)
    t3 = time.perf_counter()
    record = {
        "index": task.index,
        "file": f"{mf.SHARD_DIR}/{path.name}",
        "first_event": task.first_event,
        "n_events": task.n_events,
        "seed": task.seed,
        "energy_min": float(en.min()),
        "energy_max": float(en.max()),
        "grid": list(grid),
        "sha256": mf.sha256_file(path),
        "bytes": path.stat().st_size,
        "fingerprint": task.fingerprint,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "seconds": {"load": round(t1 - t0, 4), "produce": round(t2 - t1, 4),
                    "write": round(t3 - t2, 4), "checksum": round(time.perf_counter() - t3, 4)},
        "written_at": _now(),
    }
    mf.write_sidecar(task.out_dir, task.index, record)
    return record


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
