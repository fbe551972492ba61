"""The demo's throughput measurement: PyTorch FP32 eager, OpenVINO FP32, full INT8 and the tuned
model, each at 1 stream x 1 thread, 1 stream x all C cores and C streams x 1 thread, plus the
caloforge MC per 100 GeV shower.

Same method as ``caloforge bench`` (:mod:`caloforge.runtime.bench`): every configuration is
compiled once and warmed up, then timed in rotation (round 1: A, B, C, ...; round 2: ...) so
that the noise of a shared machine spreads over all of them; each entry is the median of the
rounds with the min/max as spread. The rows have ``caloforge bench``'s format (the tuned model
is the extra precision ``"tuned"``), so :func:`caloforge.runtime.bench.summarize` and ``plot``
read them. It is a separate loop only because ``run_bench`` times the shipped
model's own precisions and cannot take a second (tuned) model.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

#: Label of the tuned model in the rows (``precision`` column).
TUNED = "tuned"


def layouts(cores: int) -> list[tuple[int, int]]:
    """(streams, threads): 1 x 1, 1 x C, C x 1 (duplicates removed)."""
    return list(dict.fromkeys([(1, 1), (1, cores), (cores, 1)]))


def mc_rate(seconds: float, energy_gev: float = 100.0) -> dict[str, Any]:
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
    return {"energy_gev": energy_gev, "cores": 1, "seconds_per_shower_median": med,
            "showers_per_s": 1.0 / med, "low": 1.0 / max(times), "high": 1.0 / min(times),
            "showers": len(times)}


def machine() -> dict[str, Any]:
    """CPU name, usable cores, AVX-512/AMX flags, library versions, load average."""
    import openvino as ov
    import torch

    from caloforge import __version__
    from caloforge.runtime import cpu_count
    from caloforge.runtime.bench import cpu_flags, cpu_name

    try:
        import nncf

        nncf_version = nncf.__version__
    except Exception:  # pragma: no cover - nncf is a dependency
        nncf_version = None
    return {"cpu": cpu_name(), "cores": cpu_count(), "isa_flags": cpu_flags(),
            "python": platform.python_version(), "caloforge": __version__,
            "numpy": np.__version__, "torch": torch.__version__, "openvino": ov.get_version(),
            "nncf": nncf_version, "platform": platform.platform(),
            "note": "the machine may be shared with other jobs: timings are medians of "
                    "interleaved rounds, with min/max"}


def run(tuned: Any | None, *, int8_model: Any | None = None, batch: int = 32, rounds: int = 4,
        sample_s: float = 0.5, calibration_size: int = 200, mc_seconds: float = 4.0,
        progress: bool = True, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Time the generators in rotation; returns a ``caloforge bench``-style report.

    ``tuned``: the tuned model (path or ``LoadedModel``; ``None``: no tuned rows).
    ``int8_model``: the fully quantized model (``None``: quantize the shipped model with
    ``calibration_size`` events, caloforge.runtime's default post-training quantization).
    """
    from tqdm import tqdm

    from caloforge.runtime import Calibration, compile_model, cpu_count, get_backend, quantize_int8
    from caloforge.runtime.bench import summarize
    from caloforge.runtime.engine import bench_inputs, events_for, time_run
    from caloforge.runtime.modelfile import is_quantized

    say = log or (lambda s: None)
    cores = cpu_count()
    ovb = get_backend("openvino")
    shipped = ovb.load(None)
    t0 = time.perf_counter()
    if int8_model is None:
        cal = Calibration(samples=calibration_size,
                          energy_range_gev=shipped.energy_range_gev or (2.0, 500.0))
        int8 = ovb.load(quantize_int8(shipped.model, cal))
        say(f"full INT8 quantization of the shipped model: {time.perf_counter() - t0:.1f} s "
            f"({calibration_size} calibration events)")
    else:
        int8 = ovb.load(int8_model)
    models: list[tuple[str, str, Any, str]] = [  # (runtime, label, model, runtime precision)
        ("openvino", "fp32", shipped, "fp32"), ("openvino", "int8", int8, "int8")]
    if tuned is not None:
        tl = ovb.load(tuned)
        models.append(("openvino", TUNED, tl, "int8" if is_quantized(tl.model) else "fp32"))
    configs: list[dict[str, Any]] = [
        {"runtime": "torch", "precision": "fp32", "streams": 1, "threads": cores, "batch": batch,
         "gen": compile_model(None, "fp32", backend="torch", streams=1, threads=cores,
                              batch_size=batch)}]
    for runtime, label, model, prec in models:
        for s, t in layouts(cores):
            configs.append({"runtime": runtime, "precision": label, "streams": s, "threads": t,
                            "batch": batch,
                            "gen": compile_model(model, prec, streams=s, threads=t,
                                                 batch_size=batch)})
    for c in configs:
        c["key"] = f"{c['runtime']}-{c['precision']} {c['streams']}x{c['threads']} b{c['batch']}"
        g = c["gen"]
        z, e = bench_inputs(c["batch"] * c["streams"])
        g.run(z, e)  # warm-up
        c["events"] = events_for(g, sample_s, time_run(g, z, e))
        c["samples"] = []
    say(f"{len(configs)} configurations, {rounds} rounds of ~{sample_s:.2f} s each, in rotation")
    with tqdm(total=rounds * len(configs), desc="bench", unit="run", leave=False,
              disable=not progress) as bar:
        for r in range(rounds):
            for c in configs:
                z, e = bench_inputs(c["events"], seed=r)
                c["samples"].append(time_run(c["gen"], z, e))
                bar.update(1)
    rows = []
    for c in configs:
        c["gen"].close()
        s = c["samples"]
        rows.append({k: c[k] for k in ("runtime", "precision", "streams", "threads", "batch", "key")}
                    | {"median": float(np.median(s)), "low": float(min(s)), "high": float(max(s)),
                       "samples": [float(v) for v in s], "events_per_sample": c["events"]})
    summary = summarize(rows)
    for row in rows:
        row["vs_torch_fp32_best"] = row["median"] / summary["torch_fp32_best"]["median"]
        row["vs_openvino_fp32_best"] = row["median"] / summary["openvino_fp32_best"]["median"]
    mc = mc_rate(mc_seconds) if mc_seconds > 0 else None
    if mc:
        say(f"MC: {mc['seconds_per_shower_median'] * 1e3:.1f} ms per 100 GeV shower on 1 core")
        summary["best_caloforge_vs_mc"] = summary["best_caloforge"]["median"] / mc["showers_per_s"]
    return {"machine": machine(), "model": str(shipped.path),
            "tuned_model": None if tuned is None else str(tuned),
            "settings": {"batches": [batch], "rounds": rounds, "sample_seconds": sample_s,
                         "calibration_size": calibration_size, "energy_gev": 100.0},
            "results": rows, "summary": summary, "physics": {}, "mc": mc}


def best(report: dict[str, Any], precision: str, streams: int | None = None,
         threads: int | None = None, runtime: str = "openvino") -> dict[str, Any] | None:
    """The fastest row of a precision (optionally at a layout), or None."""
    sel = [r for r in report["results"] if r["runtime"] == runtime and r["precision"] == precision
           and (streams is None or r["streams"] == streams)
           and (threads is None or r["threads"] == threads)]
    return max(sel, key=lambda r: r["median"]) if sel else None


def format_rows(report: dict[str, Any]) -> str:
    """Plain-text table of the rows (showers/s median, min, max, ratio to OpenVINO FP32)."""
    lines = [f"{'configuration':<32} {'showers/s':>10} {'min':>8} {'max':>8} {'x OV fp32':>9}"]
    for r in report["results"]:
        lines.append(f"{r['key']:<32} {r['median']:>10.1f} {r['low']:>8.1f} {r['high']:>8.1f} "
                     f"{r['vs_openvino_fp32_best']:>9.2f}")
    mc = report.get("mc")
    if mc:
        lines.append(f"caloforge MC, {mc['energy_gev']:g} GeV, 1 core: {mc['showers_per_s']:.1f} "
                     f"showers/s ({mc['seconds_per_shower_median'] * 1e3:.2f} ms per shower)")
    m = report["machine"]
    lines.append(f"machine: {m['cpu']}, {m['cores']} cores, {' '.join(m['isa_flags'])}; "
                 f"{m['note']}")
    return "\n".join(lines)


def write_outputs(report: dict[str, Any], folder: Path) -> list[str]:
    """bench.json, bench.txt (the table) and bench.png (``caloforge bench``'s chart)."""
    from caloforge.atomic import write_json, write_text
    from caloforge.runtime.bench import plot

    write_json(folder / "bench.json", report)
    write_text(folder / "bench.txt", format_rows(report) + "\n")
    plot(report, folder / "bench.png")
    return ["bench.json", "bench.txt", "bench.png"]
