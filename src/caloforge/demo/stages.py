"""The demo's stages: each returns ``(numbers for demo.json, one summary line)``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from caloforge.demo.context import VALIDATION_KEYS, Context, atomic_dir, remove
from caloforge.demo.settings import ENERGY_HALF_WINDOW_GEV, reference_energies, usable_bins


def _trained_range() -> tuple[float, float]:
    from caloforge.workflows import trained_energy_range

    return trained_energy_range(None)


def stage_mc(ctx: Context) -> tuple[dict[str, Any], str]:
    from caloforge.mc import simulate_to_file

    s = ctx.settings
    rng = _trained_range()
    energies = reference_energies(s.n_events, s.seed, rng)
    ctx.path("mc").mkdir(exist_ok=True)
    res = {}
    for label, seed in (("reference", s.seed), ("floor", s.seed + 1)):
        r = simulate_to_file(ctx.path(f"mc/{label}.h5"), s.n_events, energies=energies,
                             seed=seed, progress=ctx.progress)
        res[label] = {"events": r["n_events"], "seed": seed, "seconds": r["seconds"],
                      "showers_per_s": r["showers_per_s"],
                      "mean_visible_fraction": r["mean_visible_fraction"]}
    counts = {}
    for c in usable_bins(rng):
        counts[f"{c:g}"] = int(np.sum(np.abs(energies - c) <= 5.0))
    res["spectrum"] = {"bins_gev": list(usable_bins(rng)), "half_window_gev": ENERGY_HALF_WINDOW_GEV,
                       "trained_range_gev": list(rng), "events_per_bin": counts,
                       "energy_min": float(energies.min()), "energy_max": float(energies.max())}
    rate = 2 * s.n_events / (res["reference"]["seconds"] + res["floor"]["seconds"])
    res["showers_per_s_spectrum"] = rate
    return res, (f"{s.n_events} + {s.n_events} MC showers ({min(counts.values())}-"
                 f"{max(counts.values())} per metric bin), {rate:.0f} showers/s on 1 core")


def _compile_for_generation(ctx: Context, model: Any, precision: str) -> Any:
    from caloforge.runtime import compile_model, cpu_count

    s = ctx.settings
    if s.gen_probe_s > 0:
        return compile_model(model, precision, streams="auto", probe_seconds=s.gen_probe_s)
    c = cpu_count()
    return compile_model(model, precision, streams=c, threads=1, batch_size=s.bench_batch)


def _generate(ctx: Context, target: str, model: Any, precision: str) -> dict[str, Any]:
    from caloforge.data import open_showers
    from caloforge.runtime import generate_to_file

    with open_showers(ctx.path("mc/reference.h5")) as f:
        energies = f.energies()
    ctx.path("gan").mkdir(exist_ok=True)
    t0 = time.perf_counter()
    gen = _compile_for_generation(ctx, model, precision)
    t_compile = time.perf_counter() - t0
    try:
        r = generate_to_file(ctx.path(target), energies.size, energies=energies, model=gen,
                             seed=ctx.settings.seed, progress=ctx.progress)
    finally:
        gen.close()
    return {"events": r["events"], "seconds": r["seconds"], "compile_seconds": t_compile,
            "showers_per_s": r["showers_per_s"], "precision": r["precision"],
            "layout": r["layout"], "latent_seed": ctx.settings.seed}


def stage_gan_fp32(ctx: Context) -> tuple[dict[str, Any], str]:
    r = _generate(ctx, "gan/fp32.h5", None, "fp32")
    from caloforge.gan.shipped import default_onnx_path, describe

    r["model"] = f"shipped: {describe()} ({default_onnx_path()})"
    return r, (f"{r['events']} GAN FP32 showers at the reference energies, "
               f"{r['showers_per_s']:.0f} showers/s ({r['layout']}, incl. HDF5 writing)")


def _compact(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    if metrics is None:
        return None
    out = {k: metrics.get(k) for k in VALIDATION_KEYS if k in metrics}
    br = metrics.get("shape_breakdown")
    if br:
        out["shape_bins"] = [{k: b.get(k) for k in ("bin", "n_ref", "n_cand", "P", "Q", "skipped")}
                             for b in br["bins"]]
    out["notes"] = metrics.get("notes", [])
    return out


def _validate(ctx: Context, candidate: str, folder: str) -> dict[str, Any]:
    from caloforge.physics import validate

    with atomic_dir(ctx.path(folder)) as tmp:
        res = validate(ctx.path("mc/reference.h5"), ctx.path(candidate), tmp,
                       floor_path=ctx.path("mc/floor.h5"), seed=ctx.settings.seed,
                       classifier=ctx.settings.classifier, plots=True, progress=ctx.progress)
    return {"candidate": _compact(res["candidate_vs_reference"]),
            "floor": _compact(res.get("floor_vs_reference")),
            "n_events": res["n_events"], "plots": res.get("plots", {}),
            "report": f"{folder}/report.md", "seconds": res["timing_s"]["total"]}


def _metric_line(r: dict[str, Any]) -> str:
    c, f = r["candidate"]["shape_metric"], (r["floor"] or {}).get("shape_metric")
    cs = "n/a" if c is None else f"{c:.4g}"
    fs = "n/a" if f is None else f"{f:.4g}"
    ratio = ""
    if c is not None and f:
        x = c / f
        ratio = f", {x:,.0f}x the floor" if x >= 100 else f", {x:.3g}x the floor"
    return f"3DGAN metric {cs} (MC-vs-MC floor {fs}{ratio})"


def stage_validate(ctx: Context, candidate: str, folder: str) -> tuple[dict[str, Any], str]:
    r = _validate(ctx, candidate, folder)
    return r, _metric_line(r) + f"; report {folder}/report.md"


def _all_int8(config: Any) -> bool:
    return all(v == "int8" for v in config.precisions.values())


def stage_tune(ctx: Context) -> tuple[dict[str, Any], str]:
    from caloforge.quant import DEFAULT_STRATEGY, Criterion
    from caloforge.workflows import prepare_generator_tuning, tune_generator

    s = ctx.settings
    folder = ctx.path("tune")
    resume = ctx.resume and not ctx.ran_any and (folder / "history.jsonl").exists()
    if not resume:
        remove(folder)
    # Tune the graph the runtime runs (its exact rewrites: caloforge.workflows.tune), so that
    # the tuned model is compared with FP32 and full INT8 on the same graph.
    criterion = Criterion(0.01, relative=True, higher_is_better=False)
    prepared = prepare_generator_tuning(None, ctx.path("mc/reference.h5"),
                                        calibration_size=s.calibration_size,
                                        reference_events=s.tune_events, seed=s.seed,
                                        criterion=criterion)  # the 3DGAN metric alone
    objective, folded = prepared.objective, prepared.folded
    ctx.log(f"      objective: {objective.description}; {s.calibration_size} calibration "
            f"events; strategy {DEFAULT_STRATEGY}; timeout {s.tune_timeout_s:g} s"
            + (f", at most {s.tune_max_trials} trials" if s.tune_max_trials else "")
            + (" (resuming its history)" if resume else "")
            + (f"; graph with the runtime's rewrite of {len(folded)} layers" if folded else ""))
    result = tune_generator(folder, criterion=criterion, strategy=DEFAULT_STRATEGY,
                            prepared=prepared, resume=resume, timeout_s=s.tune_timeout_s,
                            max_trials=s.tune_max_trials, latency_batch=s.bench_batch,
                            confirm_top=s.confirm_top, export_qdq=False,
                            progress=lambda m: ctx.log(f"      tune: {m}")).result
    assert result is not None
    trials = [{"key": t.key, "metric": t.metric, "passed": t.passed, "note": t.note,
               "int8_share": t.int8_share, "all_int8": _all_int8(t.config),
               "config": t.config.summary(),
               "latency_ms": None if t.latency_s is None else t.latency_s * 1e3}
              for t in result.trials]
    # all-INT8 is tried under each candidate quantization parameter set: quote the best of them
    full = min((t for t in result.trials if _all_int8(t.config) and t.metric is not None),
               key=lambda t: float(t.metric or 0.0), default=None)
    best = result.best
    res: dict[str, Any] = {
        "strategy": result.strategy, "criterion": criterion.describe(result.baseline_metric),
        "tolerance_relative": 0.01, "reference_events": objective.n_reference,
        "calibration_size": s.calibration_size, "timeout_s": s.tune_timeout_s,
        "max_trials": s.tune_max_trials, "passed": bool(result.passed),
        "baseline_metric": result.baseline_metric,
        "all_int8_metric": None if full is None else full.metric,
        "best_metric": None if best is None else best.metric,
        "best_config": None if best is None else best.config.summary(),
        "best_int8_share": None if best is None else best.int8_share,
        "latency_speedup": result.speedup, "stop_reason": result.stop_reason,
        "wall_s": result.wall_s, "trials": trials, "summary": result.summary(),
        "model": None, "fallback": None, "kind": "tuned", "rewritten_layers": folded,
    }
    if result.model_path is not None and Path(result.model_path).exists():
        res["model"] = str(Path(result.model_path).relative_to(ctx.out))
    else:  # nothing evaluated in time: use caloforge.runtime's full INT8 model instead
        res["fallback"] = ("the tuner saved no model (" + result.stop_reason + "); the demo "
                           "continues with the fully quantized INT8 model")
        res["model"] = _save_full_int8(ctx, folder / "full_int8.xml")
        res["kind"] = "full-int8"
    if best is None:
        return res, (f"the tuner evaluated no candidate ({result.stop_reason}): continuing with "
                     f"the fully quantized model {res['model']}")
    head = "criterion met" if result.passed else "NO configuration met the 1% criterion"
    return res, (f"{head}: FP32 {result.baseline_metric:.4g} -> tuned {best.metric:.4g} "
                 f"({res['best_config']}); {len(trials)} trial(s), {result.stop_reason}")


def _save_full_int8(ctx: Context, path: Path) -> str:
    from caloforge.runtime import Calibration, quantize_int8, save_model
    from caloforge.runtime.openvino_backend import load_generator

    shipped = load_generator(None)
    cal = Calibration(samples=ctx.settings.calibration_size,
                      energy_range_gev=shipped.energy_range_gev or _trained_range())
    model = quantize_int8(shipped.model, cal)
    path.parent.mkdir(exist_ok=True)
    save_model(model, path, precision="int8", source_sha256=shipped.source_sha256,
               energy_range_gev=shipped.energy_range_gev, calibration=cal.as_dict())
    return str(path.relative_to(ctx.out))


def stage_quantize_only(ctx: Context) -> tuple[dict[str, Any], str]:
    """--skip-tuning: the fully quantized model (runtime's default NNCF post-training INT8)."""
    folder = ctx.path("tune")
    remove(folder)
    folder.mkdir()
    rel = _save_full_int8(ctx, folder / "full_int8.xml")
    res = {"kind": "full-int8", "model": rel, "passed": None, "skipped_tuning": True,
           "calibration_size": ctx.settings.calibration_size}
    return res, f"tuning skipped: full INT8 model {rel} ({ctx.settings.calibration_size} calibration events)"


def _tuned_model(ctx: Context) -> tuple[Path, str]:
    from caloforge.ovgraph import is_quantized
    from caloforge.runtime.openvino_backend import load_generator

    rel = ctx.results["tune"]["model"]
    path = ctx.path(rel)
    loaded = load_generator(path)
    return path, ("int8" if is_quantized(loaded.model) else "fp32")


def stage_gan_tuned(ctx: Context) -> tuple[dict[str, Any], str]:
    path, precision = _tuned_model(ctx)
    r = _generate(ctx, "gan/tuned.h5", path, precision)
    r["model"] = str(path.relative_to(ctx.out))
    return r, (f"{r['events']} showers with {r['model']} ({precision} runtime), "
               f"{r['showers_per_s']:.0f} showers/s ({r['layout']}, incl. HDF5 writing)")


def stage_bench(ctx: Context) -> tuple[dict[str, Any], str]:
    """FP32, full INT8 and the tuned model at 1x1, 1xC, Cx1 (batch ``bench_batch``), PyTorch
    eager at 1xC, the MC at 100 GeV: :func:`caloforge.workflows.run_bench`, no physics rows."""
    from caloforge.workflows import run_bench, write_outputs

    s = ctx.settings
    tuned_path = ctx.path(ctx.results["tune"]["model"])
    full_only = ctx.results["tune"].get("kind") == "full-int8"
    with atomic_dir(ctx.path("bench")) as tmp:
        report = run_bench(tuned=None if full_only else tuned_path,
                           int8_model=tuned_path if full_only else None,
                           batches=(s.bench_batch,), precisions=("fp32", "int8"),
                           rounds=s.bench_rounds, sample_seconds=s.bench_sample_s,
                           calibration_size=s.calibration_size, mc_seconds=s.mc_bench_s,
                           plain=False, torch_single_thread=False, physics_events=0,
                           end_to_end=False, progress=ctx.progress,
                           log=lambda m: ctx.log(f"      bench: {m}"))
        files = write_outputs(report, tmp)
    out = report.to_json()
    out["files"] = [f"bench/{f}" for f in files]
    sm = report.summary
    fp32, int8, torch = sm.best("fp32"), sm.best("int8"), sm.torch_fp32_best
    return out, (f"best OpenVINO FP32 {getattr(fp32, 'median', float('nan')):.0f}/s, "
                 f"INT8 {getattr(int8, 'median', float('nan')):.0f}/s "
                 f"({sm.vs_fp32('int8'):.2f}x), PyTorch eager "
                 f"{getattr(torch, 'median', float('nan')):.0f}/s; MC "
                 + ("n/a" if report.mc is None else
                    f"{report.mc.showers_per_s:.0f}/s at 100 GeV on 1 core"))
