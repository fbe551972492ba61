"""Compile a generator at a precision, pick the execution layout, measure throughput.

This is the API the rest of caloforge (``generate``, ``bench``, the quantization tuner) uses::

    from caloforge.runtime import compile_model, measure_throughput
    gen = compile_model(ov_model_or_path, "int8", streams=2, threads=1, batch_size=32)
    images = gen.run(z, energies)                      # in order, all streams busy
    rate = measure_throughput(gen, seconds=2.0)        # Throughput(median, low, high, ...)

``streams="auto"`` probes a few (streams x threads, batch) layouts for a few seconds and keeps
the fastest; the choice is in ``gen.info["auto"]``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from caloforge.errors import UserError
from caloforge.facts import LATENT_DIM
from caloforge.runtime.backend import (
    Backend,
    CompiledGenerator,
    ExecConfig,
    GeneratorModel,
    cpu_count,
    get_backend,
)
from caloforge.runtime.noise import latent_noise

if TYPE_CHECKING:  # pragma: no cover
    import openvino as ov

    from caloforge.runtime.modelfile import ModelSource

DEFAULT_BATCH = 32
AUTO_BATCHES = (8, 32, 128)
_AUTO_CACHE: dict[tuple[Any, ...], ExecConfig] = {}


@dataclass
class Throughput:
    """Showers per second: ``median`` with ``low``/``high`` (min/max over ``samples``)."""

    median: float
    low: float
    high: float
    samples: list[float] = field(default_factory=list)
    events_per_sample: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"median": self.median, "low": self.low, "high": self.high,
                "samples": self.samples, "events_per_sample": self.events_per_sample}


def bench_inputs(n: int, energy: float = 100.0, seed: int = 0, latent_dim: int = LATENT_DIM
                 ) -> tuple[np.ndarray, np.ndarray]:
    return latent_noise(seed, 0, n, latent_dim), np.full(n, energy, dtype=np.float32)


def time_run(gen: CompiledGenerator, z: np.ndarray, e: np.ndarray,
             out: np.ndarray | None = None) -> float:
    """Showers/s of one ``gen.run`` over the given events."""
    t0 = time.perf_counter()
    gen.run(z, e, out=out)
    return z.shape[0] / (time.perf_counter() - t0)


def events_for(gen: CompiledGenerator, seconds: float, rate: float) -> int:
    """Events for one timed call of about ``seconds``: whole waves of batches on all streams."""
    wave = gen.config.batch_size * gen.config.streams
    waves = max(1, round(seconds * rate / wave))
    return wave * waves


def measure_throughput(gen: CompiledGenerator, seconds: float = 2.0, repeats: int = 5,
                       energy: float = 100.0) -> Throughput:
    """Throughput of ``gen`` in showers/s at ``energy`` GeV: a warm-up call, then ``repeats``
    timed calls of about ``seconds / repeats`` each; median and min/max."""
    wave = gen.config.batch_size * gen.config.streams
    z, e = bench_inputs(2 * wave, energy, latent_dim=gen.latent_dim)
    rate = time_run(gen, z, e)  # warm-up and first estimate
    n = events_for(gen, seconds / max(1, repeats), rate)
    z, e = bench_inputs(n, energy, latent_dim=gen.latent_dim)
    out = np.empty((n, 25, 25, 25), np.float32)
    samples = [time_run(gen, z, e, out) for _ in range(max(1, repeats))]
    return Throughput(float(np.median(samples)), float(min(samples)), float(max(samples)),
                      samples, n)


def layouts(cores: int | None = None) -> list[tuple[int, int]]:
    """(streams, threads) candidates on ``cores``: 1 x all, all x 1, and halves in between."""
    c = cores or cpu_count()
    out = [(1, c)]
    s = 2
    while s <= c:
        if c % s == 0:
            out.append((s, c // s))
        s *= 2
    if (c, 1) not in out:
        out.append((c, 1))
    return out


def compile_model(model: GeneratorModel = None, precision: str | None = "fp32", *,
                  backend: str = "openvino",
                  streams: int | str = 1, threads: int | None = None,
                  batch_size: int | None = None, probe_seconds: float = 4.0,
                  **options: Any) -> CompiledGenerator:
    """Compile ``model`` (path, ``None`` = shipped, or a backend-native model such as an
    ``openvino.Model``) at ``precision`` on ``backend``.

    ``streams``: an int (``threads`` per stream default to the cores divided among them), or
    ``"auto"``: probe layouts and batch sizes for about ``probe_seconds`` and keep the fastest
    (``gen.info["auto"]`` has the candidates and the pick). ``options`` go to the backend
    (OpenVINO: ``calibration=Calibration(...)``, ``perf_count=True``, ``bf16_check``).
    """
    be = get_backend(backend)
    if streams == "auto":
        return _auto(be, model, precision, threads, batch_size, probe_seconds, options)
    try:
        n_streams = int(streams)
    except (TypeError, ValueError):
        raise UserError(f"streams {streams!r}: expected a positive integer or 'auto'") from None
    cfg = ExecConfig(n_streams, threads, batch_size or DEFAULT_BATCH)
    return be.compile(model, precision, cfg, **options)


def _auto(be: Backend, model: GeneratorModel, precision: str | None, threads: int | None, batch_size: int | None,
          seconds: float, options: dict[str, Any]) -> CompiledGenerator:
    if be.name != "openvino":
        cfg = ExecConfig(1, threads, batch_size or DEFAULT_BATCH)
        gen = be.compile(model, precision, cfg, **options)
        gen.info["auto"] = {"picked": cfg.label(), "note": "single stream backend"}
        return gen
    # Resolve the model once (and quantize once) so every candidate compiles the same graph.
    from caloforge.runtime.openvino_backend import OpenVINOBackend

    assert isinstance(be, OpenVINOBackend)
    loaded = dataclasses.replace(be.load(cast("ModelSource", model)))
    precision = precision or loaded.precision
    if precision == "int8" and not _quantized(loaded.model):
        from caloforge.runtime import int8cache
        from caloforge.runtime.openvino_backend import Calibration

        cal = options.pop("calibration", None) or Calibration(
            energy_range_gev=loaded.energy_range_gev or Calibration().energy_range_gev)
        loaded.model = int8cache.quantized(loaded, cal, options.get("optimize", True), {})
        loaded.manifest = {**(loaded.manifest or {}), "calibration": cal.as_dict()}
    key = (id(loaded.model) if loaded.path is None else str(loaded.path), precision,
           threads, batch_size, cpu_count())
    cached = _AUTO_CACHE.get(key)
    if cached is not None:
        gen = be.compile(loaded, precision, cached, **options)
        gen.info["auto"] = {"picked": cached.label(), "cached": True}
        return gen
    cands = [(s, threads or t) for s, t in layouts()]
    batches = (batch_size,) if batch_size else AUTO_BATCHES
    per = seconds / (len(cands) * len(batches))
    results: list[dict[str, Any]] = []
    best: tuple[float, ExecConfig] | None = None
    est: dict[tuple[int, int], float] = {}
    for b in batches:
        for s, t in cands:
            cfg = ExecConfig(s, t, b)
            if (s, t) in est and b * s / est[(s, t)] > 2 * per:
                results.append({"layout": cfg.label(), "showers_per_s": None,
                                "note": "skipped: one wave exceeds the probe time"})
                continue
            gen = be.compile(loaded, precision, cfg, bf16_check=False,
                             **{k: v for k, v in options.items() if k != "bf16_check"})
            wave = b * s
            z, e = bench_inputs(wave, latent_dim=gen.latent_dim)
            t0 = time.perf_counter()
            gen.run(z, e)  # warm-up
            first = time.perf_counter() - t0
            rate = wave / first
            reps = 1 if first > per else 2
            z, e = bench_inputs(events_for(gen, per / reps, rate), latent_dim=gen.latent_dim)
            r = float(np.median([time_run(gen, z, e) for _ in range(reps)]))
            est[(s, t)] = r
            results.append({"layout": cfg.label(), "showers_per_s": round(r, 1)})
            if best is None or r > best[0]:
                best = (r, cfg)
            gen.close()
    assert best is not None
    _AUTO_CACHE[key] = best[1]
    gen = be.compile(loaded, precision, best[1], **options)
    gen.info["auto"] = {"picked": best[1].label(), "probe_showers_per_s": round(best[0], 1),
                        "candidates": results}
    return gen


def _quantized(model: ov.Model) -> bool:
    from caloforge.ovgraph import is_quantized

    return is_quantized(model)
