"""Generate showers with a compiled generator: in memory or streamed to an HDF5 file.

Event ``i`` is a function of ``(seed, i)`` and its energy only (see :mod:`caloforge.runtime.noise`),
so the output does not depend on the batch size or the number of streams. The file is the
3DGAN layout written by :class:`caloforge.data.ShowerWriter` (same as ``caloforge simulate``),
written atomically: an interrupted run leaves no output file. HDF5 compression runs in a
background thread while the next chunk is generated (in 64-event appends: h5py keeps the GIL
while compressing, so short appends let the inference threads' callbacks run in between).
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
from caloforge.facts import TRAINED_ENERGY_RANGE_GEV
from caloforge.runtime.backend import IMAGE_SHAPE, CompiledGenerator, GeneratorModel
from caloforge.runtime.engine import compile_model
from caloforge.runtime.noise import cycled_energies, latent_noise, uniform_energies

DEFAULT_COMPRESSION = 1  # gzip level; see docs/runtime.md (level 4 halves the write rate)
CHUNK_EVENTS = 512
WRITE_EVENTS = 64  # events per HDF5 append (= the file's chunk size)


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


def _compile(model: GeneratorModel | CompiledGenerator, precision: str, streams: int | str, batch_size: int | None,
             backend: str, threads: int | None) -> CompiledGenerator:
    if isinstance(model, CompiledGenerator):
        return model
    return compile_model(model, precision, backend=backend, streams=streams, threads=threads,
                         batch_size=batch_size)


def iter_generate(gen: CompiledGenerator, energy_fn: Callable[[int, int], np.ndarray], n: int,
                  seed: int = 0, chunk_events: int | None = None,
                  progress: Callable[[int], None] | None = None,
                  ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(images, energies)`` chunks for events ``0..n-1``; ``energy_fn(start, stop)``
    gives the energies (GeV) of a slice of events."""
    wave = gen.config.batch_size * gen.config.streams
    chunk_events = chunk_events or CHUNK_EVENTS
    chunk = max(wave, (chunk_events // wave) * wave)
    for lo in range(0, n, chunk):
        hi = min(lo + chunk, n)
        e = energy_fn(lo, hi)
        z = latent_noise(seed, lo, hi)
        yield gen.run(z, e.astype(np.float32), progress=progress), e


def generate(energies: np.ndarray | list[float], model: GeneratorModel | CompiledGenerator = None,
             precision: str = "fp32",
             streams: int | str = "auto", seed: int = 0, *, batch_size: int | None = None,
             backend: str = "openvino", threads: int | None = None,
             allow_extrapolation: bool = False) -> np.ndarray:
    """Showers (n, 25, 25, 25) in GeV, one per entry of ``energies`` (GeV).

    ``model``: path (.onnx / .xml), ``None`` for the shipped model, an ``openvino.Model`` or an
    already compiled generator (then ``precision``/``streams`` are ignored)."""
    gen = _compile(model, precision, streams, batch_size, backend, threads)
    e = check_energies(energies, model_energy_range(gen, model), allow_extrapolation)
    z = latent_noise(seed, 0, e.size)
    return gen.run(z, e.astype(np.float32))


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
    precision: str = "fp32", streams: int | str = "auto", seed: int = 0,
    batch_size: int | None = None, backend: str = "openvino", threads: int | None = None,
    allow_extrapolation: bool = False, compression: int = DEFAULT_COMPRESSION,
    progress: bool = False, chunk_events: int | None = None,
) -> dict[str, Any]:
    """Generate ``n`` showers into ``path`` (3DGAN HDF5 layout, atomic, streamed).

    Energies: ``energies`` (GeV, cycled over the events) or ``energy_range`` (uniform, GeV,
    reproducible from ``seed``). Returns a summary (events, seconds, showers/s, layout used).
    """
    from caloforge.data import ShowerWriter

    if n < 1:
        raise UserError(f"n {n}: must be at least 1")
    gen = _compile(model, precision, streams, batch_size, backend, threads)
    energy_fn = _energy_fn(energies, energy_range, model_energy_range(gen, model),
                           allow_extrapolation, seed)

    attrs = {"generator": "caloforge.runtime", "seed": int(seed), "precision": gen.precision,
             "backend": gen.backend, "layout_used": gen.config.label(),
             "model": str(gen.info.get("model", "shipped"))}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, unit="shower", unit_scale=False, dynamic_ncols=True,
                   desc=f"generate {gen.precision} {gen.config.label()}")
    t0 = time.perf_counter()
    q: queue.Queue[tuple[np.ndarray, np.ndarray] | None] = queue.Queue(maxsize=2)
    failure: list[BaseException] = []
    try:
        with ShowerWriter(path, grid=IMAGE_SHAPE, attrs=attrs, compression=compression,
                          chunk_events=64) as writer:

            def write_loop() -> None:
                while True:
                    item = q.get()
                    if item is None:
                        return
                    try:
                        images, e = item
                        # Small appends: h5py holds the GIL while it compresses, and the
                        # inference callbacks need it briefly; short holds keep them flowing.
                        for lo in range(0, images.shape[0], WRITE_EVENTS):
                            writer.append(images[lo:lo + WRITE_EVENTS], e[lo:lo + WRITE_EVENTS])
                            if bar is not None:
                                bar.update(min(WRITE_EVENTS, images.shape[0] - lo))
                    except BaseException as exc:
                        failure.append(exc)
                        return

            thread = threading.Thread(target=write_loop, name="caloforge-writer", daemon=True)
            thread.start()
            try:
                for images, e in iter_generate(gen, energy_fn, n, seed, chunk_events):
                    if failure:
                        break
                    _put(q, (images, e), thread)
            finally:
                _put(q, None, thread)
                thread.join()
            if failure:
                raise failure[0]
    finally:
        if bar is not None:
            bar.close()
    dt = time.perf_counter() - t0
    return {"path": str(path), "events": n, "seconds": dt, "showers_per_s": n / dt,
            "precision": gen.precision, "backend": gen.backend, "layout": gen.config.label(),
            "auto": gen.info.get("auto")}


def _put(q: queue.Queue[Any], item: Any, thread: threading.Thread) -> None:
    while True:
        try:
            q.put(item, timeout=0.2)
            return
        except queue.Full:
            if not thread.is_alive():
                with contextlib.suppress(queue.Empty):
                    q.get_nowait()
