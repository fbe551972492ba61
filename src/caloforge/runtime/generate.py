"""Generate showers with a compiled generator: in memory or streamed to an HDF5 file.

Event ``i`` is a function of ``(seed, i)`` and its energy only (see :mod:`caloforge.runtime.noise`),
so the output does not depend on the batch size or the number of streams. Every block of
showers goes through :func:`caloforge.runtime.showers.finish_showers` (NaN / infinite /
negative cells are an error, cells below the model's threshold exact zeros). The file is the
3DGAN layout written by :class:`caloforge.data.ShowerWriter` (the one writer, also of
``caloforge simulate`` and the Dask shards), atomically: an interrupted run leaves no output
file. The pipeline: the calling thread runs inference (OpenVINO's own threads), a writer
thread checks each finished chunk, hands it to the writer, whose thread pool deflates its
64-event HDF5 chunks (GIL released) while the next chunk is inferred.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from caloforge.errors import UserError
from caloforge.facts import MAX_ENERGY_GEV, TRAINED_ENERGY_RANGE_GEV
from caloforge.resources import check_memory
from caloforge.runtime.backend import IMAGE_SHAPE, CompiledGenerator, GeneratorModel, cpu_count
from caloforge.runtime.engine import DEFAULT_BATCH, compile_model
from caloforge.runtime.noise import cycled_energies, latent_noise, uniform_energies
from caloforge.runtime.showers import check_threshold, finish_showers

DEFAULT_COMPRESSION = 1  # gzip level 1 + shuffle, deflated by ISA-L; see docs/runtime.md
CHUNK_EVENTS = 512
WRITE_EVENTS = 64  # events per HDF5 chunk (each one deflated on a thread of the writer's pool)
AUTO_PROBE_MIN_EVENTS = 20_000
"""``streams="auto"`` probes layouts (~4 s) only for runs of at least this many events; smaller
runs take :func:`small_run_layout` (the probe would cost more than it can gain)."""


class ExtrapolationWarning(UserWarning):
    """Energies outside the range the generator was trained on."""


def check_energies(energies: np.ndarray | Sequence[float],
                   energy_range: tuple[float, float] | None,
                   allow_extrapolation: bool = False, what: str = "energies") -> np.ndarray:
    """Finite, positive, and inside ``energy_range`` (GeV) unless ``allow_extrapolation``."""
    e = np.asarray(energies, dtype=np.float64).reshape(-1)
    if e.size == 0:
        raise UserError(f"{what}: no energy given")
    bad = ~np.isfinite(e)
    if bad.any():
        raise UserError(f"{what}: {int(bad.sum())} energies are NaN or infinite")
    if (e <= 0).any():
        raise UserError(f"{what}: energy {e[np.argmax(e <= 0)]:g} GeV is not positive")
    if (e > MAX_ENERGY_GEV).any():
        raise UserError(f"{what}: energy {e[np.argmax(e > MAX_ENERGY_GEV)]:g} GeV is above the "
                        f"runtime's ceiling of {MAX_ENERGY_GEV:g} GeV (10 TeV: above the LHC "
                        "beam energy and the absorber's LPM energy, physics no generator here "
                        "was trained on); allow_extrapolation does not lift it")
    if energy_range is not None:
        lo, hi = energy_range
        out = (e < lo) | (e > hi)
        if out.any():
            msg = (f"{what}: {int(out.sum())} energies outside the model's trained range "
                   f"{lo:g}-{hi:g} GeV (e.g. {e[np.argmax(out)]:g} GeV)")
            if not allow_extrapolation:
                raise UserError(msg + "; allow_extrapolation=True generates anyway")
            warnings.warn(msg + ": extrapolating, the showers are not validated there",
                          ExtrapolationWarning, stacklevel=3)
    return e


def trained_range(model: GeneratorModel | CompiledGenerator) -> tuple[float, float] | None:
    """The trained energy range (GeV) of a model given as a path or ``None`` (shipped): from
    the model card or the manifest; ``None`` when unknown."""
    if model is None:
        from caloforge.gan.shipped import default_model_card

        r = default_model_card().get("energy_range_gev")
        return (float(r[0]), float(r[1])) if r else None
    if isinstance(model, str | os.PathLike):
        from caloforge.runtime.modelfile import read_manifest

        p = Path(model)
        m = read_manifest(p) if p.exists() else None
        if m and m.get("energy_range_gev"):
            r = m["energy_range_gev"]
            return (float(r[0]), float(r[1]))
    return None


def model_energy_range(gen: CompiledGenerator, model: GeneratorModel | CompiledGenerator
                       ) -> tuple[float, float] | None:
    """The trained energy range (GeV) of the compiled model, or ``None`` when unknown."""
    rng = gen.info.get("energy_range_gev")
    if rng:
        return (float(rng[0]), float(rng[1]))
    return trained_range(model)


def small_run_layout(n: int, streams: int | str, batch_size: int | None,
                     backend: str = "openvino") -> tuple[int | str, int | None]:
    """``(streams, batch_size)`` for a run of ``n`` events: ``"auto"`` is kept for large runs;
    below :data:`AUTO_PROBE_MIN_EVENTS` it becomes one stream of ``n`` events when ``n`` fits
    one batch, else one stream per core at the default batch (the INT8 optimum measured in
    docs/runtime.md) -- one stream for the single-stream backends (torch, onnxruntime)."""
    if streams != "auto" or n >= AUTO_PROBE_MIN_EVENTS:
        return streams, batch_size
    b = batch_size or DEFAULT_BATCH
    if n <= b:
        return 1, batch_size or n
    return (cpu_count() if backend == "openvino" else 1), b


def _compile(model: GeneratorModel | CompiledGenerator, precision: str | None,
             streams: int | str, batch_size: int | None, backend: str, threads: int | None
             ) -> CompiledGenerator:
    if isinstance(model, CompiledGenerator):
        return model
    return compile_model(model, precision, backend=backend, streams=streams, threads=threads,
                         batch_size=batch_size)


def model_label(gen: CompiledGenerator) -> str:
    """How errors name the model: its path, or ``the shipped model``."""
    m = gen.info.get("model")
    return "the shipped model" if m in (None, "shipped") else str(m)


def iter_generate(gen: CompiledGenerator, energy_fn: Callable[[int, int], np.ndarray], n: int,
                  seed: int = 0, chunk_events: int | None = None,
                  progress: Callable[[int], None] | None = None,
                  ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(images, energies)`` chunks for events ``0..n-1``; ``energy_fn(start, stop)``
    gives the energies (GeV) of a slice of events. The images are the raw model output: pass
    them through :func:`~caloforge.runtime.showers.finish_showers`."""
    wave = gen.config.batch_size * gen.config.streams
    chunk_events = chunk_events or CHUNK_EVENTS
    chunk = max(wave, (chunk_events // wave) * wave)
    for lo in range(0, n, chunk):
        hi = min(lo + chunk, n)
        e = energy_fn(lo, hi)
        z = latent_noise(seed, lo, hi, gen.latent_dim)
        yield gen.run(z, e.astype(np.float32), progress=progress), e


def generate(energies: np.ndarray | list[float], model: GeneratorModel | CompiledGenerator = None,
             precision: str | None = "fp32",
             streams: int | str = "auto", seed: int = 0, *, batch_size: int | None = None,
             backend: str = "openvino", threads: int | None = None,
             allow_extrapolation: bool = False, threshold: float | None = None) -> np.ndarray:
    """Showers (n, 25, 25, 25) in GeV, one per entry of ``energies`` (GeV).

    ``model``: path (.onnx / .xml), ``None`` for the shipped model, an ``openvino.Model`` or an
    already compiled generator (then ``precision``/``streams`` are ignored); ``precision``
    ``None``: the model's own (its manifest). Cells below ``threshold`` GeV (default: the
    model's cell threshold) are exact zeros."""
    threshold = check_threshold(threshold)
    e0 = np.asarray(energies, dtype=np.float64).reshape(-1)
    streams, batch_size = small_run_layout(max(1, e0.size), streams, batch_size, backend)
    gen = _compile(model, precision, streams, batch_size, backend, threads)
    e = check_energies(energies, model_energy_range(gen, model), allow_extrapolation)
    z = latent_noise(seed, 0, e.size, gen.latent_dim)
    images = gen.run(z, e.astype(np.float32))
    return finish_showers(images, gen.cell_threshold_gev if threshold is None else threshold,
                          model_label(gen))


def _energy_fn(energies: np.ndarray | Sequence[float] | None,
               energy_range: tuple[float, float] | None, trained: tuple[float, float] | None,
               allow_extrapolation: bool, seed: int) -> Callable[[int, int], np.ndarray]:
    """Checked energies of events ``[lo, hi)``: ``energies`` cycled, else uniform over
    ``energy_range`` (default: the trained range) from ``seed``."""
    if energies is not None:
        values = check_energies(energies, trained, allow_extrapolation, "energies")

        def cycled(lo: int, hi: int) -> np.ndarray:
            return cycled_energies(values, lo, hi)
        return cycled
    lo_e, hi_e = energy_range or trained or TRAINED_ENERGY_RANGE_GEV
    check_energies(np.array([lo_e, hi_e]), trained, allow_extrapolation, "energy_range")

    def uniform(lo: int, hi: int) -> np.ndarray:
        return uniform_energies(seed, lo, hi, lo_e, hi_e)
    return uniform


def generate_to_file(
    path: str | os.PathLike[str], n: int, *, energies: np.ndarray | list[float] | None = None,
    energy_range: tuple[float, float] | None = None,
    model: GeneratorModel | CompiledGenerator = None,
    precision: str | None = "fp32", streams: int | str = "auto", seed: int = 0,
    batch_size: int | None = None, backend: str = "openvino", threads: int | None = None,
    allow_extrapolation: bool = False, compression: int | str = DEFAULT_COMPRESSION,
    threshold: float | None = None, writer_threads: int | None = None,
    progress: bool = False, chunk_events: int | None = None,
) -> dict[str, Any]:
    """Generate ``n`` showers into ``path`` (3DGAN HDF5 layout, atomic, streamed).

    Energies: ``energies`` (GeV, cycled over the events) or ``energy_range`` (uniform, GeV,
    reproducible from ``seed``). ``compression``: gzip level (0 = none) or codec name
    (:func:`caloforge.data.codecs.parse_codec`); ``threshold``: cell threshold in GeV (default:
    the model's); ``writer_threads``: deflate threads. Returns a summary (events, seconds,
    showers/s, layout used).
    """
    from caloforge.data import ShowerWriter
    from caloforge.data.codecs import parse_codec

    if n < 1:
        raise UserError(f"n {n}: must be at least 1")
    codec = parse_codec(compression)
    threshold = check_threshold(threshold)
    streams, batch_size = small_run_layout(n, streams, batch_size, backend)
    gen = _compile(model, precision, streams, batch_size, backend, threads)
    energy_fn = _energy_fn(energies, energy_range, model_energy_range(gen, model),
                           allow_extrapolation, seed)
    thr = gen.cell_threshold_gev if threshold is None else threshold
    wave = gen.config.batch_size * gen.config.streams
    chunk = max(wave, ((chunk_events or CHUNK_EVENTS) // wave) * wave)
    # chunks in flight: one being inferred, two queued, one being written
    check_memory(4 * chunk * int(np.prod(IMAGE_SHAPE)) * 4, f"batch size {gen.config.batch_size}")
    attrs = {"generator": "caloforge.runtime", "seed": int(seed), "precision": gen.precision,
             "backend": gen.backend, "layout_used": gen.config.label(),
             "model": str(gen.info.get("model", "shipped")), "cell_threshold_gev": thr,
             "architecture": gen.info.get("architecture") or "unknown"}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, unit="shower", unit_scale=False, dynamic_ncols=True,
                   desc=f"generate {gen.precision} {gen.config.label()}")
    t0 = time.perf_counter()
    label = model_label(gen)
    try:
        with ShowerWriter(path, grid=IMAGE_SHAPE, attrs=attrs, compression=codec,
                          chunk_events=WRITE_EVENTS, threads=writer_threads) as writer:

            def consume(images: np.ndarray, e: np.ndarray) -> None:
                writer.append(finish_showers(images, thr, label), e)
                if bar is not None:
                    bar.update(images.shape[0])

            _overlap(iter_generate(gen, energy_fn, n, seed, chunk), consume)
    finally:
        if bar is not None:
            bar.close()
    dt = time.perf_counter() - t0
    return {"path": str(path), "events": n, "seconds": dt, "showers_per_s": n / dt,
            "precision": gen.precision, "backend": gen.backend, "layout": gen.config.label(),
            "auto": gen.info.get("auto"), "compression": codec.label(),
            "cell_threshold_gev": thr}


def _overlap(chunks: Iterator[tuple[np.ndarray, np.ndarray]],
             consume: Callable[[np.ndarray, np.ndarray], None]) -> None:
    """Produce chunks in this thread and ``consume`` them in a second one (bounded queue of 2);
    the first error of either side is raised here, after both have stopped."""
    q: queue.Queue[tuple[np.ndarray, np.ndarray] | None] = queue.Queue(maxsize=2)
    failure: list[BaseException] = []

    def loop() -> None:
        while True:
            item = q.get()
            if item is None or failure:
                return
            try:
                consume(*item)
            except BaseException as exc:
                failure.append(exc)
                return

    thread = threading.Thread(target=loop, name="caloforge-writer", daemon=True)
    thread.start()
    try:
        for item in chunks:
            if failure:
                break
            _put(q, item, thread)
    finally:
        _put(q, None, thread)
        thread.join()
    if failure:
        raise failure[0]


def _put(q: queue.Queue[Any], item: Any, thread: threading.Thread) -> None:
    while True:
        try:
            q.put(item, timeout=0.2)
            return
        except queue.Full:
            if not thread.is_alive():
                with contextlib.suppress(queue.Empty):
                    q.get_nowait()
