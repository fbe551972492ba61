"""``caloforge bench``: PyTorch FP32 eager vs OpenVINO FP32 / BF16 / INT8, batch sizes,
single stream vs multistream, the caloforge MC, and each precision's physics metric.

Method: every configuration is compiled once; after a warm-up, the configurations are timed in
rotation (round 1: A, B, C, ...; round 2: A, B, C, ...) so that machine noise (shared cores,
AMX/turbo swings) spreads over all of them; each entry is the median over the rounds, with the
min/max as spread. Layouts: ``1x1`` (1 stream x 1 thread), ``1xC`` (1 stream x all C cores) and
``Cx1`` (C streams x 1 thread).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from caloforge.runtime.backend import CompiledGenerator, ExecConfig, cpu_count, get_backend
from caloforge.runtime.engine import bench_inputs, events_for, time_run
from caloforge.runtime.noise import latent_noise

FULL_BATCHES = (1, 32, 128)
QUICK_BATCHES = (1, 32)
OV_PRECISIONS = ("fp32", "bf16", "int8")


@dataclass
class BenchConfig:
    runtime: str  # "torch" | "openvino" | "openvino-plain" (ONNX graph as imported, no rewrite)
    precision: str
    streams: int
    threads: int
    batch: int

    @property
    def key(self) -> str:
        return f"{self.runtime}-{self.precision} {self.streams}x{self.threads} b{self.batch}"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover
        pass
    return platform.processor() or "unknown CPU"


def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    fl = line.split(":", 1)[1].split()
                    return sorted(f for f in fl if f.startswith(("avx512", "amx")))
    except OSError:  # pragma: no cover
        pass
    return []


TUNED = "tuned"
"""Precision label of the rows of a tuned model (``caloforge quantize`` output) in the table."""


def _configs(batches: tuple[int, ...], precisions: tuple[str, ...]) -> list[BenchConfig]:
    c = cpu_count()
    lays = [(1, 1), (1, c)] + ([(c, 1)] if c > 1 else [])
    lays = list(dict.fromkeys(lays))
    out = [BenchConfig("torch", "fp32", 1, c, b) for b in batches]
    out += [BenchConfig("torch", "fp32", 1, 1, b) for b in batches if c > 1]
    for p in precisions:
        for s, t in lays:
            for b in batches:
                out.append(BenchConfig("openvino", p, s, t, b))
    for p in ("fp32", "int8"):  # reference: the graph as imported, without caloforge's rewrite
        for s, t in lays:
            for b in batches:
                out.append(BenchConfig("openvino-plain", p, s, t, b))
    return out


def _mc_rate(seconds: float, log: Callable[[str], None]) -> dict[str, Any] | None:
    try:
        from caloforge.mc import simulate
    except ImportError:
        return None
    simulate(np.array([100.0]), seed=1)  # warm-up
    times = []
    n = 0
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end or n < 3:
        t0 = time.perf_counter()
        simulate(np.array([100.0]), seed=n)
        times.append(time.perf_counter() - t0)
        n += 1
    med = float(np.median(times))
    log(f"MC: {med * 1e3:.1f} ms per 100 GeV shower ({n} showers)")
    return {"seconds_per_shower_median": med, "showers_per_s": 1.0 / med,
            "low": 1.0 / max(times), "high": 1.0 / min(times), "showers": n}


def _physics(gens: dict[str, CompiledGenerator], n: int, seed: int,
             log: Callable[[str], None]) -> dict[str, Any]:
    """Physics of each precision on the same latent noise at 100 GeV: the 3DGAN shape metric vs
    an MC sample (caloforge.physics.metric) and the rel. L2 distance to OpenVINO FP32."""
    e = np.full(n, 100.0)
    z = latent_noise(seed, 0, n)
    outs = {k: g.run(z, e.astype(np.float32)) for k, g in gens.items()}
    ref_key = "openvino-fp32"
    ref = outs[ref_key]
    mc = None
    note = None
    try:
        from caloforge.mc import simulate
        from caloforge.physics import metric

        mc = simulate(e, seed=seed + 1)
    except ImportError as exc:
        note = f"physics metric unavailable ({exc}); rel. L2 vs FP32 only"
    res: dict[str, Any] = {"events": n, "energy_gev": 100.0, "note": note, "by_precision": {}}
    for k, img in outs.items():
        row: dict[str, Any] = {
            "rel_l2_vs_openvino_fp32": float(np.linalg.norm(img - ref) / np.linalg.norm(ref)),
            "mean_total_energy_gev": float(img.sum(axis=(1, 2, 3)).mean()),
        }
        if mc is not None:
            try:
                row["metric_vs_mc"] = float(metric(mc, (img, e)))
            except Exception as exc:  # metric still under construction elsewhere: report it
                row["metric_vs_mc"] = None
                row["metric_error"] = f"{type(exc).__name__}: {exc}"[:200]
        res["by_precision"][k] = row
        log(f"physics {k}: " + ", ".join(f"{a}={b:.4g}" if isinstance(b, float) else f"{a}={b}"
                                         for a, b in row.items()))
    return res


def _end_to_end(gen: CompiledGenerator, engine_rate: float, seconds: float,
                log: Callable[[str], None]) -> list[dict[str, Any]]:
    """``generate_to_file`` (HDF5 writing included) with the best configuration, per gzip
    level, as a fraction of the engine's bench throughput."""
    import tempfile
    from pathlib import Path

    from caloforge.runtime.generate import generate_to_file

    n = max(gen.config.batch_size * gen.config.streams, int(engine_rate * seconds))
    out = []
    with tempfile.TemporaryDirectory() as d:
        for level in (1, 4, 0):
            path = Path(d) / f"gen{level}.h5"
            res = generate_to_file(path, n, energies=[100.0], model=gen, compression=level)
            row = {"gzip_level": level, "events": n, "showers_per_s": res["showers_per_s"],
                   "fraction_of_engine": res["showers_per_s"] / engine_rate,
                   "file_mb": path.stat().st_size / 1e6}
            out.append(row)
            log(f"generate end-to-end gzip {level}: {row['showers_per_s']:.0f}/s = "
                f"{row['fraction_of_engine']:.0%} of the engine ({row['file_mb']:.1f} MB)")
    return out


def run_bench(quick: bool = False, *, model: Any = None, weights: Any = None,
              batches: tuple[int, ...] | None = None,
              precisions: tuple[str, ...] = OV_PRECISIONS, rounds: int | None = None,
              sample_seconds: float | None = None, physics_events: int | None = None,
              include_mc: bool = True, log: Callable[[str], None] | None = None,
              tuned: Any = None) -> dict[str, Any]:
    """Run the benchmark; returns a JSON-able dict (``results``: one row per configuration with
    ``median``/``low``/``high`` showers/s and ratios; ``summary``: the targets' ratios).

    ``tuned``: a tuned model (``caloforge quantize``'s ``model.xml``) timed with the same
    batches and layouts as the rest, as precision ``"tuned"``."""
    import openvino as ov

    log = log or (lambda s: None)
    batches = tuple(batches or (QUICK_BATCHES if quick else FULL_BATCHES))
    rounds = rounds or (3 if quick else 5)
    sample_seconds = sample_seconds or (0.25 if quick else 0.6)
    physics_events = physics_events or (100 if quick else 400)
    labels = precisions + ((TUNED,) if tuned is not None else ())  # OpenVINO rows to time
    cfgs = _configs(batches, labels)
    ovb = get_backend("openvino")
    loaded = ovb.load(model)
    tuned_loaded = None
    if tuned is not None:
        from caloforge.runtime.modelfile import is_quantized

        tuned_loaded = ovb.load(tuned)
        tuned_precision = "int8" if is_quantized(tuned_loaded.model) else "fp32"
    t_q = time.perf_counter()
    from caloforge.runtime.openvino_backend import Calibration, quantize_int8

    cal = Calibration(energy_range_gev=loaded.energy_range_gev or (2.0, 500.0))
    int8_model = loaded.model if loaded.precision == "int8" else quantize_int8(loaded.model, cal)
    int8_plain = (loaded.model if loaded.precision == "int8"
                  else quantize_int8(loaded.model, cal, optimize=False))
    log(f"INT8 quantization: {time.perf_counter() - t_q:.1f} s ({cal.samples} samples)")
    gens: dict[str, CompiledGenerator] = {}
    for c in cfgs:
        ec = ExecConfig(c.streams, c.threads, c.batch)
        if c.runtime == "torch":
            gens[c.key] = get_backend("torch").compile(weights, "fp32", ec)
        elif c.runtime == "openvino" and c.precision == TUNED:
            gens[c.key] = ovb.compile(tuned_loaded, tuned_precision, ec, bf16_check=False)
        elif c.runtime == "openvino":
            src = int8_model if c.precision == "int8" else loaded
            gens[c.key] = ovb.compile(src, c.precision, ec, bf16_check=False)
        else:
            src = int8_plain if c.precision == "int8" else loaded
            gens[c.key] = ovb.compile(src, c.precision, ec, optimize=False)
    # Warm-up and per-config sample sizes.
    sizes: dict[str, int] = {}
    for c in cfgs:
        g = gens[c.key]
        wave = c.batch * c.streams
        z, e = bench_inputs(wave)
        g.run(z, e)
        rate = time_run(g, z, e)
        sizes[c.key] = events_for(g, sample_seconds, rate)
    log(f"{len(cfgs)} configurations, {rounds} rounds of ~{sample_seconds:.2f} s each")
    samples: dict[str, list[float]] = {c.key: [] for c in cfgs}
    for r in range(rounds):
        for c in cfgs:
            n = sizes[c.key]
            z, e = bench_inputs(n, seed=r)
            samples[c.key].append(time_run(gens[c.key], z, e))
        log(f"round {r + 1}/{rounds} done")
    rows = []
    for c in cfgs:
        s = samples[c.key]
        rows.append({"runtime": c.runtime, "precision": c.precision, "streams": c.streams,
                     "threads": c.threads, "batch": c.batch, "key": c.key,
                     "median": float(np.median(s)), "low": float(min(s)), "high": float(max(s)),
                     "samples": [float(v) for v in s], "events_per_sample": sizes[c.key]})
    summary = summarize(rows)
    for row in rows:
        row["vs_torch_fp32_best"] = row["median"] / summary["torch_fp32_best"]["median"]
        row["vs_openvino_fp32_best"] = row["median"] / summary["openvino_fp32_best"]["median"]
    phys_gens = {"torch-fp32": gens[f"torch-fp32 1x{cpu_count()} b{batches[-1]}"]}
    for p in labels:
        phys_gens[f"openvino-{p}"] = gens[f"openvino-{p} 1x{cpu_count()} b{batches[-1]}"]
    physics = _physics(phys_gens, physics_events, 2026, log)
    best_key = summary["best_caloforge"]["key"]
    end_to_end = _end_to_end(gens[best_key], summary["best_caloforge"]["median"],
                             2.0 if quick else 6.0, log)
    mc = _mc_rate(2.0 if quick else 5.0, log) if include_mc else None
    if mc:
        summary["best_caloforge_vs_mc"] = summary["best_caloforge"]["median"] / mc["showers_per_s"]
    import torch

    return {
        "machine": {"cpu": cpu_name(), "cores": cpu_count(), "isa_flags": cpu_flags(),
                    "openvino": ov.get_version(), "torch": torch.__version__,
                    "note": "shared machine: other jobs ran concurrently; medians in rotation"},
        "model": str(loaded.path) if loaded.path else "in memory",
        "tuned_model": None if tuned is None else str(tuned),
        "settings": {"quick": quick, "batches": list(batches), "rounds": rounds,
                     "sample_seconds": sample_seconds},
        "results": rows, "summary": summary, "physics": physics, "mc": mc,
        "generate_end_to_end": end_to_end,
    }


def _best(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    sel = [r for r in rows if all(r[k] == v for k, v in match.items())]
    return max(sel, key=lambda r: r["median"]) if sel else {"median": float("nan"), "key": "-"}


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The targets: INT8 vs FP32 (best settings), best caloforge vs PyTorch eager (best),
    multistream scaling (C x 1 vs C x the 1x1 rate, and vs 1 x C)."""
    c = cpu_count()
    torch_best = _best(rows, runtime="torch")
    fp32_best = _best(rows, runtime="openvino", precision="fp32")
    int8_best = _best(rows, runtime="openvino", precision="int8")
    best = _best(rows, runtime="openvino")
    plain_fp32 = _best(rows, runtime="openvino-plain", precision="fp32")
    plain_int8 = _best(rows, runtime="openvino-plain", precision="int8")
    out: dict[str, Any] = {
        "torch_fp32_best": _brief(torch_best), "openvino_fp32_best": _brief(fp32_best),
        "openvino_int8_best": _brief(int8_best), "best_caloforge": _brief(best),
        "int8_vs_fp32": int8_best["median"] / fp32_best["median"],
        "openvino_fp32_plain_best": _brief(plain_fp32),
        "openvino_int8_plain_best": _brief(plain_int8),
        "int8_vs_fp32_plain": int8_best["median"] / plain_fp32["median"],
        "plain_int8_vs_plain_fp32": plain_int8["median"] / plain_fp32["median"],
        "rewrite_gain_fp32": fp32_best["median"] / plain_fp32["median"],
        "best_vs_torch": best["median"] / torch_best["median"],
        "openvino_fp32_vs_torch": fp32_best["median"] / torch_best["median"],
        "targets": {"int8_vs_fp32": 4.0, "best_vs_torch": 12.0, "multistream_efficiency": 0.95},
        "multistream": [],
    }
    tuned = _best(rows, runtime="openvino", precision=TUNED)
    if tuned.get("key", "-") != "-":
        out["openvino_tuned_best"] = _brief(tuned)
        out["tuned_vs_fp32"] = tuned["median"] / fp32_best["median"]
    bf16 = _best(rows, runtime="openvino", precision="bf16")
    if bf16.get("key", "-") != "-":
        out["openvino_bf16_best"] = _brief(bf16)
        out["bf16_vs_fp32"] = bf16["median"] / fp32_best["median"]
    for p in sorted({r["precision"] for r in rows if r["runtime"] == "openvino"}):
        for b in sorted({r["batch"] for r in rows}):
            one = _best(rows, runtime="openvino", precision=p, batch=b, streams=1, threads=1)
            multi = _best(rows, runtime="openvino", precision=p, batch=b, streams=c, threads=1)
            wide = _best(rows, runtime="openvino", precision=p, batch=b, streams=1, threads=c)
            if c > 1 and one.get("key", "-") != "-" and multi.get("key", "-") != "-":
                out["multistream"].append({
                    "precision": p, "batch": b, "1x1": one["median"], f"{c}x1": multi["median"],
                    f"1x{c}": wide["median"],
                    "efficiency": multi["median"] / (c * one["median"]),
                    "gain_vs_1xall": multi["median"] / wide["median"]})
    return out


def _brief(r: dict[str, Any]) -> dict[str, Any]:
    return {"key": r.get("key"), "median": r["median"], "low": r.get("low"), "high": r.get("high")}


def format_table(report: dict[str, Any]) -> str:
    """Plain-text table of showers/s and ratios, and the target summary."""
    rows = report["results"]
    lines = [f"{'configuration':<32} {'showers/s':>10} {'min':>8} {'max':>8} "
             f"{'x torch':>8} {'x OV fp32':>9}"]
    for r in rows:
        lines.append(f"{r['key']:<32} {r['median']:>10.1f} {r['low']:>8.1f} {r['high']:>8.1f} "
                     f"{r['vs_torch_fp32_best']:>8.2f} {r['vs_openvino_fp32_best']:>9.2f}")
    s = report["summary"]
    lines.append("")
    lines.append(f"best PyTorch FP32 eager: {s['torch_fp32_best']['key']} "
                 f"{s['torch_fp32_best']['median']:.1f}/s")
    lines.append(f"best OpenVINO FP32:      {s['openvino_fp32_best']['key']} "
                 f"{s['openvino_fp32_best']['median']:.1f}/s "
                 f"({s['openvino_fp32_vs_torch']:.2f}x torch)")
    lines.append(f"best OpenVINO INT8:      {s['openvino_int8_best']['key']} "
                 f"{s['openvino_int8_best']['median']:.1f}/s")
    has_plain = s.get("openvino_fp32_plain_best", {}).get("key", "-") != "-"
    if has_plain:
        lines.append(f"OpenVINO FP32 / INT8 without the upsample-conv rewrite: "
                     f"{s['openvino_fp32_plain_best']['key']} "
                     f"{s['openvino_fp32_plain_best']['median']:.1f}/s / "
                     f"{s['openvino_int8_plain_best']['key']} "
                     f"{s['openvino_int8_plain_best']['median']:.1f}/s; rewrite gain (FP32) "
                     f"{s['rewrite_gain_fp32']:.2f}x")
    lines.append(f"INT8 / FP32 (OpenVINO, best settings): {s['int8_vs_fp32']:.2f}x (target >= 4)"
                 + (f"; vs FP32 without rewrite {s['int8_vs_fp32_plain']:.2f}x; "
                    f"without rewrite on both {s['plain_int8_vs_plain_fp32']:.2f}x"
                    if has_plain else ""))
    if "tuned_vs_fp32" in s:
        lines.append(f"tuned / FP32 (OpenVINO, best settings): {s['tuned_vs_fp32']:.2f}x "
                     f"(target >= 4); best tuned {s['openvino_tuned_best']['key']} "
                     f"{s['openvino_tuned_best']['median']:.1f}/s")
    if "bf16_vs_fp32" in s:
        lines.append(f"BF16 / FP32 (OpenVINO, best settings): {s['bf16_vs_fp32']:.2f}x")
    lines.append(f"best caloforge / best PyTorch eager:   {s['best_vs_torch']:.2f}x (target >= 12)")
    for m in s["multistream"]:
        keys = [k for k in m if "x" in k and k[0].isdigit()]
        lines.append(f"multistream {m['precision']} b{m['batch']}: "
                     + ", ".join(f"{k} {m[k]:.1f}/s" for k in keys)
                     + f"; efficiency {m['efficiency']:.0%} (target >= 95%), "
                     f"gain vs 1 stream x all threads {m['gain_vs_1xall']:.2f}x")
    if report.get("mc"):
        lines.append(f"caloforge MC at 100 GeV: {report['mc']['showers_per_s']:.1f} showers/s; "
                     f"best caloforge / MC = {s.get('best_caloforge_vs_mc', float('nan')):.2f}x")
    ph = report.get("physics", {})
    for k, v in ph.get("by_precision", {}).items():
        metric = v.get("metric_vs_mc")
        lines.append(f"physics {k:<16} rel. L2 vs OV FP32 {v['rel_l2_vs_openvino_fp32']:.3g}"
                     + (f", 3DGAN metric vs MC {metric:.4f}" if metric is not None else ""))
    for g in report.get("generate_end_to_end") or []:
        lines.append(f"generate end-to-end (HDF5, gzip {g['gzip_level']}): "
                     f"{g['showers_per_s']:.0f}/s = {g['fraction_of_engine']:.0%} of the engine "
                     f"(target >= 90%), {g['file_mb']:.1f} MB for {g['events']} showers")
    if ph.get("note"):
        lines.append(f"physics note: {ph['note']}")
    m = report["machine"]
    lines.append(f"machine: {m['cpu']}, {m['cores']} cores, {' '.join(m['isa_flags'])}; "
                 f"{m['note']}")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Any) -> None:
    """Bar chart (PNG): best showers/s per precision, 1 stream x all threads vs C streams x 1
    thread (log scale), and the ratios to PyTorch FP32 eager."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from caloforge.atomic import atomic_path

    rows = report["results"]
    c = report["machine"]["cores"]
    groups = [("torch", "fp32", "PyTorch\nFP32 eager")] + [
        ("openvino", p, f"OpenVINO\n{p.upper()}") for p in (*OV_PRECISIONS, TUNED)
        if any(r["precision"] == p and r["runtime"] == "openvino" for r in rows)]
    lays = [(1, 1, "1 stream x 1 thread"), (1, c, f"1 stream x {c} threads"),
            (c, 1, f"{c} streams x 1 thread")]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / len(lays)
    torch_best = report["summary"]["torch_fp32_best"]["median"]
    for j, (s, t, label) in enumerate(lays):
        vals = []
        for rt, p, _ in groups:
            sel = [r["median"] for r in rows if r["runtime"] == rt and r["precision"] == p
                   and r["streams"] == s and r["threads"] == t]
            vals.append(max(sel) if sel else 0.0)
        x = np.arange(len(groups)) + (j - (len(lays) - 1) / 2) * width
        ax.bar(x, vals, width, label=label)
        ax2.bar(x, [v / torch_best for v in vals], width, label=label)
    for a in (ax, ax2):
        a.set_xticks(np.arange(len(groups)), [g[2] for g in groups])
        a.grid(axis="y", alpha=0.3)
    ax.set_ylabel("showers / s (best batch)")
    ax.set_yscale("log")
    ax.set_title("Throughput (median, best batch size)")
    ax2.set_ylabel("x PyTorch FP32 eager (best setting)")
    ax2.axhline(1.0, color="k", lw=0.8)
    ax2.set_title("Speed-up over PyTorch FP32 eager")
    ax.legend(fontsize=8)
    fig.suptitle(f"caloforge bench — {report['machine']['cpu']}, {c} cores (shared machine)",
                 fontsize=10)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
