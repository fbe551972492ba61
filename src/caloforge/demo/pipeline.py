"""``caloforge demo``: the whole chain on the shipped model and the built-in Monte Carlo.

Stages (each writes under the output folder, atomically, and leaves a marker
``stages/<name>.json`` with its numbers once its outputs are complete)::

    1 mc            mc/reference.h5, mc/floor.h5      GFlash MC, reference + independent floor
    2 gan-fp32      gan/fp32.h5                       shipped GAN, OpenVINO FP32
    3 validate-fp32 validate/fp32/                    physics validation vs MC (+ floor)
    4 tune          tune/                             INT8 tuning, 3DGAN metric, 1% relative
    5 gan-tuned     gan/tuned.h5                      the tuned model, same energies and noise
    6 validate-tuned validate/tuned/
    7 bench         bench/                            FP32 / INT8 / tuned, 1 vs N streams, MC
    8 report        report.md, demo.json, fig1_*.png, fig2_*.png

With ``resume=True`` a stage whose marker and outputs exist is skipped (its numbers come from
the marker), so an interrupted demo loses at most the stage it was in; the tuner also resumes
its own history. Without ``resume`` the demo's previous outputs in the folder are replaced.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from caloforge.atomic import write_json
from caloforge.demo.settings import (
    ENERGY_HALF_WINDOW_GEV,
    DemoSettings,
    reference_energies,
    settings_for,
    usable_bins,
)
from caloforge.errors import UserError

STAGES_DIR = "stages"
SETTINGS_FILE = "settings.json"
#: Everything the demo writes in its folder (removed before a fresh, non-resumed run).
OWNED = ("mc", "gan", "validate", "tune", "bench", STAGES_DIR, "report.md", "demo.json",
         "fig1_fp32_vs_int8.png", "fig2_multistream.png")
#: Headline validation metrics kept in the stage results, (key in compare(), label).
VALIDATION_KEYS = ("shape_metric", "shape_moment_term", "shape_profile_term", "sep_power_mean",
                   "sep_power_spectrum", "fpd", "fpd_error", "kpd", "kpd_error",
                   "classifier_auc")

Log = Callable[[str], None]


@dataclass
class _Context:
    out: Path
    settings: DemoSettings
    resume: bool
    progress: bool
    log: Log
    t_start: float = field(default_factory=time.perf_counter)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    timings: list[dict[str, Any]] = field(default_factory=list)
    ran_any: bool = False  # a stage ran in this invocation: every later stage must run too

    def path(self, rel: str) -> Path:
        return self.out / rel


def _clock(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m}:{s:02d}"


@contextlib.contextmanager
def _atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; on success it replaces ``final``.

    Temporary folders left by a killed earlier run (``.<name>.tmp-<pid>``) are removed."""
    for stale in final.parent.glob(f".{final.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _prepare_output(out: Path, settings: DemoSettings, resume: bool, log: Log) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out}: cannot create the output folder ({exc.strerror})") from None
    if not os.access(out, os.W_OK):
        raise UserError(f"{out}: output folder is not writable")
    stages = out / STAGES_DIR
    saved = stages / SETTINGS_FILE
    if resume and saved.exists():
        try:
            old = json.loads(saved.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"{saved}: unreadable ({exc}); drop --resume to start over") from None
        if old != settings.as_dict():
            diff = ", ".join(f"{k} {old.get(k)!r} -> {v!r}" for k, v in settings.as_dict().items()
                             if old.get(k) != v)
            raise UserError(f"{out}: --resume with other settings than the interrupted run "
                            f"({diff}); use the same options, another --output, or drop --resume")
        log(f"resuming the demo in {out}")
    else:
        previous = [n for n in OWNED if (out / n).exists()]
        if previous:
            log(f"replacing the previous demo outputs in {out} (use --resume to continue a run)")
            for n in previous:
                _remove(out / n)
    stages.mkdir(exist_ok=True)
    write_json(saved, settings.as_dict())


def _stage(ctx: _Context, index: int, total: int, name: str, title: str, outputs: list[str],
           fn: Callable[[], tuple[dict[str, Any], str]], keep_partial: bool = False
           ) -> dict[str, Any]:
    """Run one stage (or skip it on resume); print a header and a summary line.

    ``keep_partial``: leave an unfinished stage's outputs for the stage to continue from (the
    tuner's history); otherwise they are removed before the stage runs."""
    marker = ctx.out / STAGES_DIR / f"{name}.json"
    head = f"[{index}/{total}] {title}"
    if ctx.resume and not ctx.ran_any and marker.exists() and all(ctx.path(o).exists() for o in outputs):
        rec = json.loads(marker.read_text())
        ctx.log(f"{head} ... done in an earlier run, skipped (--resume)")
        ctx.results[name] = rec["result"]
        ctx.timings.append({"stage": name, "title": title, "seconds": rec["seconds"],
                            "skipped": True})
        return rec["result"]
    if not keep_partial:
        for o in outputs:
            _remove(ctx.path(o))
    _remove(marker)
    ctx.log(f"{head} ...  (elapsed {_clock(time.perf_counter() - ctx.t_start)})")
    t0 = time.perf_counter()
    result, line = fn()
    ctx.ran_any = True
    seconds = time.perf_counter() - t0
    missing = [o for o in outputs if not ctx.path(o).exists()]
    if missing:  # pragma: no cover - a stage bug, not a user error
        raise RuntimeError(f"stage {name} did not write {missing}")
    write_json(marker, {"stage": name, "title": title, "seconds": seconds, "result": result})
    ctx.results[name] = result
    ctx.timings.append({"stage": name, "title": title, "seconds": seconds, "skipped": False})
    ctx.log(f"      {line}  [{seconds:.1f} s]")
    return result


# ---------------------------------------------------------------------------------- stages
def _trained_range() -> tuple[float, float]:
    from caloforge.gan.shipped import default_model_card

    r = default_model_card().get("energy_range_gev") or (2.0, 500.0)
    return float(r[0]), float(r[1])


def _stage_mc(ctx: _Context) -> tuple[dict[str, Any], str]:
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


def _compile_for_generation(ctx: _Context, model: Any, precision: str) -> Any:
    from caloforge.runtime import compile_model, cpu_count

    s = ctx.settings
    if s.gen_probe_s > 0:
        return compile_model(model, precision, streams="auto", probe_seconds=s.gen_probe_s)
    c = cpu_count()
    return compile_model(model, precision, streams=c, threads=1, batch_size=s.bench_batch)


def _generate(ctx: _Context, target: str, model: Any, precision: str) -> dict[str, Any]:
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


def _stage_gan_fp32(ctx: _Context) -> tuple[dict[str, Any], str]:
    r = _generate(ctx, "gan/fp32.h5", None, "fp32")
    r["model"] = "shipped (caloforge.gan.shipped.default_onnx_path())"
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


def _validate(ctx: _Context, candidate: str, folder: str) -> dict[str, Any]:
    from caloforge.physics import validate

    with _atomic_dir(ctx.path(folder)) as tmp:
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
        r = c / f
        ratio = f", {r:,.0f}x the floor" if r >= 100 else f", {r:.3g}x the floor"
    return f"3DGAN metric {cs} (MC-vs-MC floor {fs}{ratio})"


def _stage_validate(ctx: _Context, candidate: str, folder: str) -> tuple[dict[str, Any], str]:
    r = _validate(ctx, candidate, folder)
    return r, _metric_line(r) + f"; report {folder}/report.md"


def _all_int8(config: Any) -> bool:
    return all(v == "int8" for v in config.precisions.values())


def _stage_tune(ctx: _Context) -> tuple[dict[str, Any], str]:
    from caloforge.gan.shipped import default_onnx_path
    from caloforge.quant import DEFAULT_STRATEGY, Criterion, tune
    from caloforge.quant import gan_objective as go

    s = ctx.settings
    folder = ctx.path("tune")
    resume = ctx.resume and not ctx.ran_any and (folder / "history.jsonl").exists()
    if not resume:
        _remove(folder)
    onnx = default_onnx_path()
    # Tune the graph the runtime runs: its exact upsample-conv rewrite first (the runtime applies
    # it to every float model it compiles, but not to an already quantized one), so that the
    # tuned model is compared with FP32 and full INT8 on the same graph.
    model, identity, folded = go.runtime_graph(onnx)
    objective = go.gan_objective(onnx, ctx.path("mc/reference.h5"),
                                 calibration_size=s.calibration_size,
                                 reference_events=s.tune_events, seed=s.seed)
    criterion = Criterion(0.01, relative=True, higher_is_better=False)
    ctx.log(f"      objective: {objective.description}; {s.calibration_size} calibration "
            f"events; strategy {DEFAULT_STRATEGY}; timeout {s.tune_timeout_s:g} s"
            + (f", at most {s.tune_max_trials} trials" if s.tune_max_trials else "")
            + (" (resuming its history)" if resume else "")
            + (f"; graph with the runtime's rewrite of {len(folded)} layers" if folded else ""))
    result = tune(model, objective.calibration, objective.evaluate, criterion, DEFAULT_STRATEGY,
                  folder, resume=resume, timeout_s=s.tune_timeout_s, max_trials=s.tune_max_trials,
                  latency_batch=s.bench_batch, confirm_top=s.confirm_top, export_qdq=False,
                  model_sha256=identity,
                  progress=lambda m: ctx.log(f"      tune: {m}"))
    trials = [{"key": t.key, "metric": t.metric, "passed": t.passed, "note": t.note,
               "int8_share": t.int8_share, "all_int8": _all_int8(t.config),
               "config": t.config.summary(),
               "latency_ms": None if t.latency_s is None else t.latency_s * 1e3}
              for t in result.trials]
    # all-INT8 is tried under each candidate quantization parameter set: quote the best of them
    full = min((t for t in result.trials if _all_int8(t.config) and t.metric is not None),
               key=lambda t: t.metric, default=None)
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


def _save_full_int8(ctx: _Context, path: Path) -> str:
    from caloforge.runtime import Calibration, get_backend, quantize_int8, save_model

    shipped = get_backend("openvino").load(None)
    cal = Calibration(samples=ctx.settings.calibration_size,
                      energy_range_gev=shipped.energy_range_gev or (2.0, 500.0))
    model = quantize_int8(shipped.model, cal)
    path.parent.mkdir(exist_ok=True)
    save_model(model, path, precision="int8", source_sha256=shipped.source_sha256,
               energy_range_gev=shipped.energy_range_gev, calibration=cal.as_dict())
    return str(path.relative_to(ctx.out))


def _stage_quantize_only(ctx: _Context) -> tuple[dict[str, Any], str]:
    """--skip-tuning: the fully quantized model (runtime's default NNCF post-training INT8)."""
    folder = ctx.path("tune")
    _remove(folder)
    folder.mkdir()
    rel = _save_full_int8(ctx, folder / "full_int8.xml")
    res = {"kind": "full-int8", "model": rel, "passed": None, "skipped_tuning": True,
           "calibration_size": ctx.settings.calibration_size}
    return res, f"tuning skipped: full INT8 model {rel} ({ctx.settings.calibration_size} calibration events)"


def _tuned_model(ctx: _Context) -> tuple[Path, str]:
    from caloforge.runtime import get_backend
    from caloforge.runtime.modelfile import is_quantized

    rel = ctx.results["tune"]["model"]
    path = ctx.path(rel)
    loaded = get_backend("openvino").load(path)
    return path, ("int8" if is_quantized(loaded.model) else "fp32")


def _stage_gan_tuned(ctx: _Context) -> tuple[dict[str, Any], str]:
    path, precision = _tuned_model(ctx)
    r = _generate(ctx, "gan/tuned.h5", path, precision)
    r["model"] = str(path.relative_to(ctx.out))
    return r, (f"{r['events']} showers with {r['model']} ({precision} runtime), "
               f"{r['showers_per_s']:.0f} showers/s ({r['layout']}, incl. HDF5 writing)")


def _stage_bench(ctx: _Context) -> tuple[dict[str, Any], str]:
    from caloforge.demo import speed

    s = ctx.settings
    tuned_rel = ctx.results["tune"]["model"]
    full_only = ctx.results["tune"].get("kind") == "full-int8"
    with _atomic_dir(ctx.path("bench")) as tmp:
        report = speed.run(None if full_only else ctx.path(tuned_rel),
                           int8_model=ctx.path(tuned_rel) if full_only else None,
                           batch=s.bench_batch, rounds=s.bench_rounds, sample_s=s.bench_sample_s,
                           calibration_size=s.calibration_size, mc_seconds=s.mc_bench_s,
                           progress=ctx.progress, log=lambda m: ctx.log(f"      bench: {m}"))
        files = speed.write_outputs(report, tmp)
    report["files"] = [f"bench/{f}" for f in files]
    sm = report["summary"]
    return report, (f"best OpenVINO FP32 {sm['openvino_fp32_best']['median']:.0f}/s, "
                    f"INT8 {sm['openvino_int8_best']['median']:.0f}/s "
                    f"({sm['int8_vs_fp32']:.2f}x), PyTorch eager "
                    f"{sm['torch_fp32_best']['median']:.0f}/s; MC "
                    + ("n/a" if not report["mc"] else
                       f"{report['mc']['showers_per_s']:.0f}/s at 100 GeV on 1 core"))


# ------------------------------------------------------------------------------------ driver
def run_demo(output_dir: str | os.PathLike[str] = "caloforge-demo", quick: bool = False, *,
             n_events: int | None = None, seed: int = 0, skip_tuning: bool = False,
             resume: bool = False, progress: bool = True, log: Log | None = print,
             settings: DemoSettings | None = None, **overrides: Any) -> dict[str, Any]:
    """Run the demo into ``output_dir``; returns the ``demo.json`` content.

    ``quick``: CI sizes (about a minute); otherwise the default for a person (5-8 min on 2
    cores). ``n_events``: MC reference / floor / GAN sample size (default 3500, quick 140;
    at least 140: 20 per metric bin). ``skip_tuning``: use the fully quantized INT8 model
    instead of tuning. ``resume``: skip the stages an earlier run with the same settings
    completed. ``overrides``: any :class:`~caloforge.demo.settings.DemoSettings` field
    (``tune_timeout_s``, ``tune_max_trials``, ``bench_rounds``, ...). ``log``: where the stage
    lines go (``None``: silent); ``progress``: tqdm bars.
    """
    import warnings

    from caloforge.demo.report import build_summary, write_report

    s = settings or settings_for(quick, n_events=n_events, seed=seed, skip_tuning=skip_tuning,
                                 **overrides)
    say: Log = log or (lambda m: None)

    def flush_say(m: str) -> None:
        say(m)
        if log is print:
            import sys

            sys.stdout.flush()

    out = Path(output_dir)
    mode = "quick" if s.quick else "default"
    flush_say(f"caloforge demo ({mode}): {s.n_events} MC events per sample, seed {s.seed}, "
              f"output {out}/")
    _prepare_output(out, s, resume, flush_say)
    ctx = _Context(out, s, resume, progress, flush_say)
    load_start = os.getloadavg()
    n = 8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        # PyTorch eager (bench baseline) warns about the generator's even 'same' kernels
        warnings.filterwarnings("ignore", message="Using padding='same'")
        _stage(ctx, 1, n, "mc", "simulate the MC reference and the MC floor sample",
               ["mc/reference.h5", "mc/floor.h5"], lambda: _stage_mc(ctx))
        _stage(ctx, 2, n, "gan-fp32", "generate with the GAN in FP32", ["gan/fp32.h5"],
               lambda: _stage_gan_fp32(ctx))
        _stage(ctx, 3, n, "validate-fp32", "validate GAN FP32 vs MC", ["validate/fp32"],
               lambda: _stage_validate(ctx, "gan/fp32.h5", "validate/fp32"))
        if s.tuning:
            _stage(ctx, 4, n, "tune", "tune INT8 with the physics criterion (1% relative)",
                   ["tune"], lambda: _stage_tune(ctx), keep_partial=True)
        else:
            _stage(ctx, 4, n, "tune", "quantize to INT8 (tuning skipped)", ["tune"],
                   lambda: _stage_quantize_only(ctx))
        what = "the tuned model" if ctx.results["tune"].get("kind") == "tuned" else "full INT8"
        _stage(ctx, 5, n, "gan-tuned", f"generate with {what}", ["gan/tuned.h5"],
               lambda: _stage_gan_tuned(ctx))
        _stage(ctx, 6, n, "validate-tuned", f"validate {what} vs MC", ["validate/tuned"],
               lambda: _stage_validate(ctx, "gan/tuned.h5", "validate/tuned"))
        _stage(ctx, 7, n, "bench", "benchmark FP32 vs INT8 vs tuned, 1 vs N streams, and MC",
               ["bench"], lambda: _stage_bench(ctx))
        flush_say(f"[8/8] write the report ...  (elapsed {_clock(time.perf_counter() - ctx.t_start)})")
        t0 = time.perf_counter()
        summary = build_summary(ctx.results, s)
        demo: dict[str, Any] = {
            "caloforge_demo_version": 1, "output_dir": str(out), "settings": s.as_dict(),
            "machine": ctx.results["bench"]["machine"],
            "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
            "headline": summary, "stages": ctx.results, "timings": ctx.timings,
        }
        demo["total_seconds"] = time.perf_counter() - ctx.t_start
        files = write_report(out, demo)
        ctx.timings.append({"stage": "report", "title": "write the report",
                            "seconds": time.perf_counter() - t0, "skipped": False})
        demo["total_seconds"] = time.perf_counter() - ctx.t_start
        demo["files"] = files
        write_json(out / "demo.json", demo)
    flush_say(f"      wrote {out}/report.md, demo.json, {', '.join(files['figures'])}")
    flush_say(f"done in {_clock(demo['total_seconds'])}: " + summary["one_line"])
    return demo
