"""Run a production: shards in this process, on a local Dask cluster, or on an existing one.

:func:`produce` plans the shards, skips the ones already done (see
:mod:`caloforge.data.manifest`), runs the missing ones and writes the manifest. Each shard is
one Dask task (:func:`run_shard`) that writes its own files atomically, so a task that dies
half-way (exception, worker process killed) leaves nothing behind under a final name, and Dask
simply runs it again: on an exception up to ``retries`` times, on a lost worker up to the
scheduler's ``distributed.scheduler.allowed-failures`` (default 3) times.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from caloforge.data import manifest as mf
from caloforge.data.codecs import parse_codec
from caloforge.data.layouts import LAYOUT_3DGAN
from caloforge.data.manifest import FORMAT, FORMAT_VERSION
from caloforge.errors import CaloforgeError, UserError
from caloforge.facts import TRAINED_ENERGY_RANGE_GEV
from caloforge.scale.plan import (
    DEFAULT_SHARD_SIZE,
    SEEDING,
    EnergySpec,
    Plan,
    ShardTask,
    fresh_seed,
)
from caloforge.scale.producers import (
    ProducerSpec,
    default_compression,
    local_mode,
    seeding_of,
)
from caloforge.scale.shard import ProductionError, _now, run_shard

__all__ = ["AUTO_MIN_EVENTS", "ProductionError", "ProductionSummary", "available_cores",
           "connect", "local_cluster", "produce", "run_shard"]

log = logging.getLogger(__name__)

AUTO_MIN_EVENTS = 2000
"""Without --scheduler/--workers, fewer events than this run in-process: a local cluster costs
2-4 s to start (docs/scale.md), about the MC time of 500-1000 showers per core."""


@dataclass
class ProductionSummary:
    """What :func:`produce` did. Times in seconds."""

    out_dir: Path
    n_events: int
    n_shards: int
    computed: list[int]
    skipped: list[int]
    mode: str
    workers: int
    wall_s: float
    manifest: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def events_computed(self) -> int:
        return sum(self.manifest["shards"][i]["n_events"] for i in self.computed)

    @property
    def showers_per_s(self) -> float:
        return self.events_computed / self.wall_s if self.wall_s > 0 else float("nan")


# ---------------------------------------------------------------------- client side
def produce(
    out_dir: str | os.PathLike[str],
    n_events: int,
    producer: ProducerSpec | str | dict[str, Any] = "mc",
    *,
    seed: int | None = None,
    shard_size: int | None = None,
    energies: Iterable[float] | np.ndarray | None = None,
    energy_range: tuple[float, float] | None = None,
    layout: str = LAYOUT_3DGAN,
    compression: int | str | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    client: Any = None,
    retries: int = 2,
    progress: bool = False,
    on_shard: Callable[[dict[str, Any]], None] | None = None,
) -> ProductionSummary:
    """Produce ``n_events`` showers into the production directory ``out_dir``, or finish it.

    ``producer``: ``"mc"``, ``ProducerSpec.gan(model, precision)``, ... (see
    :mod:`caloforge.scale.producers`). Energies in GeV: ``energies`` (cycled over events) or
    ``energy_range=(low, high)`` (uniform; default ``(2, 500)``). ``seed``: None takes the seed of
    an existing production in ``out_dir``, or draws a fresh one (recorded in the manifest).
    ``shard_size``: events per shard (default 1000, or that of the existing production).
    ``compression``: gzip level of the shard files (0-9; default 4, GAN 1: faster to write).

    Where it runs: ``client`` (a ``distributed.Client``), else ``scheduler`` (address
    ``tcp://host:8786`` or a scheduler JSON file), else ``workers=N`` (a local cluster of N
    single-threaded worker processes; ``0`` = in this process, no Dask), else the local default
    of the producer (MC: one worker process per core; GAN: in-process, the runtime uses every core).

    Re-running the same call finishes an interrupted production: only shards that are missing or
    fail their checksum are computed. Raises UserError when ``out_dir`` holds a different
    production, ProductionError when a shard fails for good.
    """
    t_start = time.perf_counter()
    out = Path(out_dir).absolute()
    spec = ProducerSpec.from_json(producer)
    compression = _check_arguments(out, spec, compression, retries, workers)
    (out / mf.SHARD_DIR).mkdir(parents=True, exist_ok=True)

    with mf.production_lock(out):
        previous = mf.load_manifest(out) if (out / mf.MANIFEST).exists() else None
        plan = _make_plan(out, previous, spec, n_events, seed, shard_size, energies, energy_range,
                          layout)
        fingerprint = plan.fingerprint()
        manifest = _manifest_head(plan, previous, compression)
        mf.write_manifest(out, {**manifest, "status": "incomplete",
                               "shards": (previous or {}).get("shards", [])})
        mf.remove_stale_temporaries(out)

        sizes = [plan.shard(i, str(out)).n_events for i in range(plan.n_shards)]
        records, todo = _shards_done(out, plan.n_shards, sizes, fingerprint, previous)
        skipped = sorted(records)
        tasks = [replace(plan.shard(i, str(out)), compression=compression) for i in todo]

        bar = _progress(progress, plan.n_events, sum(sizes[i] for i in skipped))

        def finished(rec: dict[str, Any]) -> None:
            records[rec["index"]] = rec
            if bar is not None:
                bar.update(rec["n_events"])
            if on_shard is not None:
                on_shard(rec)

        mode, n_workers = "none", 0
        try:
            if tasks:
                mode, n_workers = _execute(tasks, spec, client, scheduler, workers, retries, finished)
        finally:
            if bar is not None:
                bar.close()
            mf.remove_stale_temporaries(out)

        _complete_manifest(out, plan.n_shards, records, manifest)

    return ProductionSummary(out_dir=out, n_events=plan.n_events, n_shards=plan.n_shards,
                             computed=sorted(todo), skipped=skipped, mode=mode, workers=n_workers,
                             wall_s=time.perf_counter() - t_start, manifest=manifest)


def _check_arguments(out: Path, spec: ProducerSpec, compression: int | str | None,
                     retries: int, workers: int | None) -> int | str:
    """Raise UserError for a bad output directory or option; returns the compression."""
    if out.suffix.lower() in (".h5", ".hdf5") and not out.is_dir():
        raise UserError(f"{out}: a production is a directory, not an HDF5 file; give a directory "
                        "name (merge it into one file afterwards with merge_production)")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    if not out.parent.is_dir():
        raise UserError(f"{out}: parent directory {out.parent} does not exist")
    if compression is None:
        compression = default_compression(spec)
    parse_codec(compression)  # a gzip level 0..9 or a codec name (the one writer's)
    if retries < 0:
        raise UserError(f"retries {retries}: must be >= 0")
    if workers is not None and workers < 0:
        raise UserError(f"workers {workers}: must be >= 0")
    return compression


def _shards_done(out: Path, n_shards: int, sizes: list[int], fingerprint: str,
                 previous: dict[str, Any] | None) -> tuple[dict[int, dict[str, Any]], list[int]]:
    """(records of the shards already complete and intact, indices still to do)."""
    known = {s["index"]: s.get("sha256") for s in (previous or {}).get("shards", [])}
    records: dict[int, dict[str, Any]] = {}
    todo: list[int] = []
    with ThreadPoolExecutor(max_workers=4) as pool:
        done = pool.map(lambda i: mf.shard_done(out, i, sizes[i], fingerprint, known.get(i)),
                        range(n_shards))
        for i, rec in enumerate(done):
            if rec is None:
                todo.append(i)
            else:
                records[i] = rec
    return records, todo


def _complete_manifest(out: Path, n_shards: int, records: dict[int, dict[str, Any]],
                       manifest: dict[str, Any]) -> None:
    """Check every shard is visible and alike, then write the complete manifest."""
    missing = [i for i in range(n_shards) if not mf.shard_path(out, i).is_file()]
    if missing:
        raise ProductionError(
            f"{out}: {len(missing)} shard file(s) written by the workers are not visible here "
            f"(first: {mf.shard_path(out, missing[0]).name}); the production directory must be "
            "on a file system shared by this machine and all workers")
    shard_list = [{k: records[i][k] for k in mf.MANIFEST_SHARD_KEYS} for i in range(n_shards)]
    grids = {tuple(records[i]["grid"]) for i in range(n_shards)}
    if len(grids) != 1:
        raise ProductionError(f"{out}: shards have different grids {sorted(grids)}")
    manifest.update(
        status="complete",
        completed=_now(),
        grid=list(grids.pop()),
        energy_min=min(s["energy_min"] for s in shard_list),
        energy_max=max(s["energy_max"] for s in shard_list),
        bytes=sum(s["bytes"] for s in shard_list),
        shards=shard_list,
    )
    mf.write_manifest(out, manifest)


def _make_plan(out: Path, previous: dict[str, Any] | None, spec: ProducerSpec, n_events: int,
               seed: int | None, shard_size: int | None, energies: Any,
               energy_range: tuple[float, float] | None, layout: str) -> Plan:
    if energies is not None and energy_range is not None:
        raise UserError("give energies or an energy range, not both")
    if energies is not None:
        espec = EnergySpec.fixed(energies)
    elif energy_range is not None:
        espec = EnergySpec.uniform(*energy_range)
    elif previous is not None:
        espec = EnergySpec.from_json(previous["energies"])
    else:
        espec = EnergySpec.uniform(*TRAINED_ENERGY_RANGE_GEV)
    if seed is None:
        seed = int(previous["seed"]) if previous is not None else fresh_seed()
    if shard_size is None:
        shard_size = int(previous["shard_size"]) if previous is not None else DEFAULT_SHARD_SIZE
    plan = Plan(producer=spec, n_events=int(n_events), shard_size=int(shard_size), seed=int(seed),
                energies=espec, layout=layout, seeding=seeding_of(spec))
    if previous is not None:
        if previous.get("fingerprint") != plan.fingerprint():
            old = previous.get("identity", {})
            diff = [k for k, v in plan.identity().items() if old.get(k) != v]
            raise UserError(
                f"{out}: holds a different production (differs in: {', '.join(diff) or 'format'}); "
                "use another directory, or delete this one to start over")
        if int(previous["n_events"]) > plan.n_events:
            raise UserError(f"{out}: holds {previous['n_events']} events; a production can be "
                            f"extended but not shrunk to {plan.n_events}")
    return plan


def _manifest_head(plan: Plan, previous: dict[str, Any] | None,
                   compression: int | str) -> dict[str, Any]:
    from caloforge import __version__

    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "caloforge_version": __version__,
        "created": (previous or {}).get("created", _now()),
        "producer": plan.producer.to_json(),
        "n_events": plan.n_events,
        "n_shards": plan.n_shards,
        "shard_size": plan.shard_size,
        "seed": plan.seed,
        "seeding": plan.seeding,
        "seeding_rule": SEEDING[plan.seeding],
        "energies": plan.energies.to_json(),
        "layout": plan.layout,
        "compression": compression,
        "identity": plan.identity(),
        "fingerprint": plan.fingerprint(),
    }


def _execute(tasks: list[ShardTask], spec: ProducerSpec, client: Any, scheduler: str | None,
             workers: int | None, retries: int,
             finished: Callable[[dict[str, Any]], None]) -> tuple[str, int]:
    """Run the tasks where asked; returns ``(mode, number of workers)``."""
    if client is not None:
        return "client", _run_on_client(client, tasks, retries, finished)
    if scheduler is not None:
        with connect(scheduler) as cl:
            return "scheduler", _run_on_client(cl, tasks, retries, finished)
    if workers is None:
        n_events = sum(t.n_events for t in tasks)
        if (local_mode(spec) == "in-process" or len(tasks) == 1 or available_cores() == 1
                or n_events < AUTO_MIN_EVENTS):
            workers = 0
        else:
            workers = min(available_cores(), len(tasks))
    if workers == 0:
        for t in tasks:
            finished(run_shard(t))
        return "in-process", 0
    with local_cluster(workers) as cl:
        return "local", _run_on_client(cl, tasks, retries, finished)


def _run_on_client(client: Any, tasks: list[ShardTask], retries: int,
                   finished: Callable[[dict[str, Any]], None]) -> int:
    from distributed import as_completed

    token = os.urandom(4).hex()
    futures = [client.submit(run_shard, t, key=f"caloforge-shard-{t.index:05d}-{token}",
                             pure=False, retries=retries) for t in tasks]
    n_workers = len(client.scheduler_info(n_workers=-1).get("workers", {}))
    try:
        for fut in as_completed(futures):
            try:
                rec = fut.result()
            except CaloforgeError:
                raise
            except Exception as exc:
                raise ProductionError(f"shard {fut.key}: failed ({type(exc).__name__}: {exc})") from exc
            finished(rec)
            fut.release()
    finally:
        client.cancel([f for f in futures if not f.done()])
    return n_workers


def connect(scheduler: str, timeout: float = 30.0) -> Any:
    """A ``distributed.Client`` for ``tcp://host:port`` or a scheduler JSON file (UserError if not)."""
    from distributed import Client

    try:
        if os.path.isfile(scheduler):
            return Client(scheduler_file=scheduler, timeout=timeout)
        return Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        raise UserError(f"scheduler {scheduler}: cannot connect ({exc})") from None


@contextlib.contextmanager
def local_cluster(n_workers: int) -> Iterator[Any]:
    """A client on a fresh ``LocalCluster`` of ``n_workers`` single-threaded worker processes.

    Dask sets ``MALLOC_TRIM_THRESHOLD_=65536`` in its workers; that switches off glibc's dynamic
    mmap threshold and made the MC 20-25 % slower per shower (docs/scale.md), so it is unset here.
    """
    import dask
    from distributed import Client, LocalCluster

    # no dashboard; the scheduler's small HTTP server (health, metrics) on a free port. Worker
    # logs only at CRITICAL: a heartbeat racing the worker's own close logs a traceback at ERROR
    # after a successful run (dask/distributed#7105); task errors come back through the futures.
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, scheduler_kwargs={"dashboard_address": ":0"},
                               silence_logs=logging.CRITICAL)
    with cluster, Client(cluster) as client:
        yield client


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover  (not Linux)
        return max(1, os.cpu_count() or 1)


def _progress(enabled: bool, total: int, initial: int) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="shower", desc="production")
