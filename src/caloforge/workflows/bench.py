"""The bench, one implementation: PyTorch FP32 eager vs OpenVINO FP32 / BF16 / INT8 (and a tuned
model), batch sizes, single stream vs multistream, the caloforge MC, each precision's physics,
and ``generate_to_file`` end to end. Used by ``caloforge bench``, the demo and
``benchmarks/bench_engine.py``.

Timing: :func:`caloforge.runtime.bench.time_in_rotation` (every configuration compiled once,
warmed up, then timed in rotation; medians with min/max). Results are typed
(:class:`~caloforge.workflows.bench_rows.BenchRow`, :class:`BenchReport`).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from caloforge.facts import TRAINED_ENERGY_RANGE_GEV
from caloforge.runtime import Calibration, CompiledGenerator, ExecConfig, cpu_count, get_backend
from caloforge.runtime.bench import BenchConfig, cpu_flags, cpu_name, layouts, time_in_rotation
from caloforge.runtime.engine import AUTO_BATCHES
from caloforge.runtime.modelfile import LoadedModel, ModelSource
from caloforge.runtime.noise import latent_noise
from caloforge.runtime.openvino_backend import load_generator
from caloforge.workflows.bench_rows import (
    TUNED,
    BenchReport,
    BenchRow,
    BenchSummary,
    EndToEnd,
    McRate,
    PhysicsRow,
)

__all__ = ["TUNED", "BenchOptions", "BenchReport", "BenchRow", "BenchSummary", "McRate",
           "machine", "mc_rate", "run_bench"]

FULL_BATCHES = (1, 32, 128)
QUICK_BATCHES = (1, 32)
OV_PRECISIONS = ("fp32", "bf16", "int8")
Log = Callable[[str], None]


@dataclass(frozen=True)
class BenchOptions:
    """What the bench runs. ``None`` fields take the quick or full default.

    batches, precisions (OpenVINO precisions besides a tuned model), rounds, sample_seconds:
    the timed configurations. plain: also time the ONNX graph as imported (no rewrite) in FP32
    and INT8. torch_single_thread: also time PyTorch at 1 x 1. physics_events: showers per
    precision for the physics rows (0: none). mc_seconds: MC timing (0: none). end_to_end:
    time ``generate_to_file``. calibration_size: events of the full-INT8 calibration.
    """

    quick: bool = False
    batches: tuple[int, ...] | None = None
    precisions: tuple[str, ...] = OV_PRECISIONS
    rounds: int | None = None
    sample_seconds: float | None = None
    plain: bool = True
    torch_single_thread: bool = True
    physics_events: int | None = None
    mc_seconds: float | None = None
    end_to_end: bool = True
    calibration_size: int = 200

    def resolved(self) -> BenchOptions:
        q = self.quick
        return dataclasses.replace(
            self, batches=tuple(self.batches or (QUICK_BATCHES if q else FULL_BATCHES)),
            rounds=self.rounds or (3 if q else 5),
            sample_seconds=self.sample_seconds or (0.25 if q else 0.6),
            physics_events=(100 if q else 400) if self.physics_events is None
            else self.physics_events,
            mc_seconds=(2.0 if q else 5.0) if self.mc_seconds is None else self.mc_seconds)


def _configs(o: BenchOptions, labels: tuple[str, ...], torch: bool = True) -> list[BenchConfig]:
    c = cpu_count()
    batches = o.batches or ()
    out = [BenchConfig("torch", "fp32", 1, c, b) for b in batches] if torch else []
    if torch and o.torch_single_thread and c > 1:
        out += [BenchConfig("torch", "fp32", 1, 1, b) for b in batches]
    out += [BenchConfig("openvino", p, s, t, b) for p in labels for s, t in layouts(c)
            for b in batches]
    if o.plain:  # reference: the graph as imported, without caloforge's rewrite
        out += [BenchConfig("openvino-plain", p, s, t, b) for p in ("fp32", "int8")
                for s, t in layouts(c) for b in batches]
    return out


def mc_rate(seconds: float, energy_gev: float = 100.0) -> McRate:
    """caloforge MC showers/s at ``energy_gev`` on one core: the median over single-shower
    calls during ``seconds`` (at least 3)."""
    from caloforge.mc import simulate

    simulate(np.array([energy_gev]), seed=1)  # warm-up (medium tables)
    times: list[float] = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(times) < 3:
        t0 = time.perf_counter()
        simulate(np.array([energy_gev]), seed=len(times))
        times.append(time.perf_counter() - t0)
    med = float(np.median(times))
    return McRate(energy_gev, med, 1.0 / med, 1.0 / max(times), 1.0 / min(times), len(times))


def machine() -> dict[str, Any]:
    """CPU name, usable cores, AVX-512/AMX flags, library versions."""
    import nncf
    import openvino as ov
    import torch

    from caloforge import __version__

    return {"cpu": cpu_name(), "cores": cpu_count(), "isa_flags": cpu_flags(),
            "python": platform.python_version(), "caloforge": __version__,
            "numpy": np.__version__, "torch": torch.__version__, "openvino": ov.get_version(),
            "nncf": nncf.__version__, "platform": platform.platform(),
            "note": "the machine may be shared with other jobs: timings are medians of "
                    "interleaved rounds, with min/max"}


def _physics(gens: dict[str, CompiledGenerator], n: int, seed: int,
             log: Log) -> dict[str, PhysicsRow]:
    """Each precision on the same latent noise at 100 GeV: the 3DGAN shape metric vs an MC
    sample and the rel. L2 distance to OpenVINO FP32."""
    from caloforge.mc import simulate
    from caloforge.physics import metric

    e = np.full(n, 100.0)
    z = latent_noise(seed, 0, n, next(iter(gens.values())).latent_dim)
    outs = {k: g.run(z, e.astype(np.float32)) for k, g in gens.items()}
    ref = outs["openvino-fp32"]
    mc = simulate(e, seed=seed + 1)
    rows = {}
    for k, img in outs.items():
        rows[k] = PhysicsRow(float(np.linalg.norm(img - ref) / np.linalg.norm(ref)),
                             float(img.sum(axis=(1, 2, 3)).mean()), float(metric(mc, (img, e))))
        log(f"physics {k}: {rows[k]}")
    return rows


def _to_disk(gens: dict[str, CompiledGenerator], rows: list[BenchRow], seconds: float,
             log: Log) -> list[EndToEnd]:
    """Per OpenVINO precision (fp32, int8), its best configuration: ``generate_to_file`` with
    the default options against ``gen.run`` on the same events, as marginal rates from two run
    sizes (n and 3n), the engine and the file timed alternately so both see the same load."""
    from caloforge.runtime.generate import DEFAULT_COMPRESSION, generate_to_file

    out = []
    for precision in ("fp32", "int8"):
        # generate's auto probe picks among batches of 8 or more (runtime.engine.AUTO_BATCHES)
        cands = [r for r in rows if r.runtime == "openvino" and r.precision == precision
                 and r.batch >= min(AUTO_BATCHES)] or \
            [r for r in rows if r.runtime == "openvino" and r.precision == precision]
        if not cands:
            continue
        best = max(cands, key=lambda r: r.median)
        gen = gens[best.key]
        wave = gen.config.batch_size * gen.config.streams
        n1 = max(wave, int(best.median * seconds) // wave * wave)
        sizes = (n1, 3 * n1)
        t_engine, t_disk, size = [], [], 0.0
        with tempfile.TemporaryDirectory() as d:
            for n in sizes:
                z = latent_noise(0, 0, n, gen.latent_dim)
                e = np.full(n, 100.0, np.float32)
                t0 = time.perf_counter()
                gen.run(z, e)
                t_engine.append(time.perf_counter() - t0)
                path = Path(d) / f"gen{n}.h5"
                t0 = time.perf_counter()
                generate_to_file(path, n, energies=[100.0], model=gen,
                                 compression=DEFAULT_COMPRESSION)
                t_disk.append(time.perf_counter() - t0)
                size = path.stat().st_size / 1e6
        dn = sizes[1] - sizes[0]
        engine = dn / max(t_engine[1] - t_engine[0], 1e-9)
        disk = dn / max(t_disk[1] - t_disk[0], 1e-9)
        row = EndToEnd(precision, best.key, f"gzip:{DEFAULT_COMPRESSION}", sizes, engine, disk,
                       disk / engine, size)
        out.append(row)
        log(f"to disk {precision} ({best.key}): {disk:.0f}/s vs engine {engine:.0f}/s = "
            f"{row.fraction_of_engine:.0%}")
    return out


def _int8_models(loaded: LoadedModel, int8_model: ModelSource, o: BenchOptions,
                 log: Log) -> tuple[ModelSource, ModelSource]:
    """(full INT8 of the rewritten graph, full INT8 of the plain graph)."""
    from caloforge.runtime import quantize_int8

    if int8_model is not None:
        given = load_generator(int8_model)
        return given, given
    if loaded.precision == "int8":
        return loaded, loaded
    t0 = time.perf_counter()
    cal = Calibration(samples=o.calibration_size,
                      energy_range_gev=loaded.energy_range_gev or TRAINED_ENERGY_RANGE_GEV)
    rewritten = quantize_int8(loaded.model, cal)
    plain = quantize_int8(loaded.model, cal, optimize=False) if o.plain else rewritten
    log(f"INT8 quantization: {time.perf_counter() - t0:.1f} s ({cal.samples} samples)")
    return rewritten, plain


def _torch_module(weights: str | os.PathLike[str] | None) -> Any:
    """The PyTorch generator of ``weights`` (``None``: the shipped model's), of whichever
    architecture the file holds (:func:`caloforge.gan.checkpoint.load_generator`)."""
    from caloforge.gan.checkpoint import load_generator as load_torch
    from caloforge.gan.shipped import default_weights_path

    return load_torch(default_weights_path() if weights is None else weights)


def _compile_all(cfgs: list[BenchConfig], loaded: LoadedModel,
                 int8: tuple[ModelSource, ModelSource], tuned: ModelSource,
                 weights: str | os.PathLike[str] | None) -> dict[str, CompiledGenerator]:
    from caloforge.ovgraph import is_quantized

    ovb = get_backend("openvino")
    tuned_loaded = None if tuned is None else load_generator(tuned)
    module = _torch_module(weights) if any(c.runtime == "torch" for c in cfgs) else None
    gens: dict[str, CompiledGenerator] = {}
    for c in cfgs:
        ec = ExecConfig(c.streams, c.threads, c.batch)
        if c.runtime == "torch":
            gens[c.key] = get_backend("torch").compile(module, "fp32", ec)
        elif c.precision == TUNED and tuned_loaded is not None:
            prec = "int8" if is_quantized(tuned_loaded.model) else "fp32"
            gens[c.key] = ovb.compile(tuned_loaded, prec, ec, bf16_check=False)
        elif c.runtime == "openvino":
            src = int8[0] if c.precision == "int8" else loaded
            gens[c.key] = ovb.compile(src, c.precision, ec, bf16_check=False)
        else:
            src = int8[1] if c.precision == "int8" else loaded
            gens[c.key] = ovb.compile(src, c.precision, ec, optimize=False)
    return gens


def _rows(cfgs: list[BenchConfig], timings: dict[str, Any]) -> list[BenchRow]:
    rows = []
    for c in cfgs:
        s = timings[c.key].samples
        rows.append(BenchRow(c.runtime, c.precision, c.streams, c.threads, c.batch,
                             float(np.median(s)), float(min(s)), float(max(s)),
                             [float(v) for v in s], timings[c.key].events_per_sample))
    summary = BenchSummary(rows, cpu_count())
    for row in rows:
        row.vs_torch_fp32_best = row.median / getattr(summary.torch_fp32_best, "median", np.nan)
        row.vs_openvino_fp32_best = row.median / getattr(summary.best("fp32"), "median", np.nan)
    return rows


def run_bench(quick: bool = False, *, model: ModelSource = None,
              weights: str | os.PathLike[str] | None = None, tuned: ModelSource = None,
              int8_model: ModelSource = None, log: Log | None = None, progress: bool = False,
              options: BenchOptions | None = None, **option_values: Any) -> BenchReport:
    """Run the bench (``options`` / ``option_values``: :class:`BenchOptions` fields).

    ``model``: the generator (path, LoadedModel; ``None``: shipped); ``weights``: its PyTorch
    weights (``None``: shipped); ``tuned``: a tuned model (``caloforge quantize``'s
    ``model.xml``) timed at the same batches and layouts, precision ``"tuned"``;
    ``int8_model``: a fully quantized model to time as ``int8`` (default: quantize ``model``).
    """
    say = log or (lambda s: None)
    o = dataclasses.replace(options or BenchOptions(quick=quick), **option_values).resolved()
    loaded = load_generator(model)
    labels = o.precisions + ((TUNED,) if tuned is not None else ())
    # PyTorch eager runs the shipped weights (either architecture): for another model only
    # with its weights
    cfgs = _configs(o, labels, torch=weights is not None or bool(loaded.extra.get("shipped")))
    gens = _compile_all(cfgs, loaded, _int8_models(loaded, int8_model, o, say), tuned, weights)
    say(f"{len(cfgs)} configurations, {o.rounds} rounds of ~{o.sample_seconds:.2f} s each")
    from tqdm import tqdm

    with tqdm(total=(o.rounds or 0) * len(cfgs), desc="bench", unit="run", leave=False,
              disable=not progress) as bar:
        timings = time_in_rotation(gens, o.rounds or 1, o.sample_seconds or 0.1,
                                   on_round=lambda r: say(f"round {r + 1}/{o.rounds} done"),
                                   on_run=lambda: bar.update(1))
    report = BenchReport(machine(), str(loaded.path) if loaded.path else "in memory",
                         None if tuned is None else str(tuned),
                         {"quick": o.quick, "batches": list(o.batches or ()), "rounds": o.rounds,
                          "sample_seconds": o.sample_seconds,
                          "calibration_size": o.calibration_size, "energy_gev": 100.0},
                         _rows(cfgs, timings))
    top = report.summary.best_caloforge
    if o.physics_events:
        c, b = cpu_count(), (o.batches or (1,))[-1]
        phys = {f"{r}-{p}": gens[BenchConfig(r, p, 1, c, b).key]
                for r, p in [("torch", "fp32"), *(("openvino", p) for p in labels)]
                if BenchConfig(r, p, 1, c, b).key in gens}
        report.physics, report.physics_events = _physics(phys, o.physics_events, 2026, say), \
            o.physics_events
    if o.end_to_end and top is not None:
        report.end_to_end = _to_disk(gens, report.rows, 1.0 if o.quick else 3.0, say)
    if o.mc_seconds:
        report.mc = mc_rate(o.mc_seconds)
        say(f"MC: {report.mc.seconds_per_shower_median * 1e3:.1f} ms per 100 GeV shower")
    for g in gens.values():
        g.close()
    return report
