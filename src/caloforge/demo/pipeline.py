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

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from caloforge.atomic import write_json
from caloforge.demo import stages
from caloforge.demo.context import (
    OWNED,
    SETTINGS_FILE,
    STAGES_DIR,
    Context,
    Log,
    clock,
    remove,
)
from caloforge.demo.settings import DemoSettings, settings_for
from caloforge.errors import UserError
from caloforge.iocheck import make_output_dir


def _prepare_output(out: Path, settings: DemoSettings, resume: bool, log: Log) -> None:
    make_output_dir(out)
    if not os.access(out, os.W_OK):
        raise UserError(f"{out}: output folder is not writable")
    markers = out / STAGES_DIR
    saved = markers / SETTINGS_FILE
    if resume and saved.exists():
        try:
            old = json.loads(saved.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"{saved}: unreadable ({exc}); run with resume=False to start over"
                            ) from None
        if old != settings.as_dict():
            diff = ", ".join(f"{k} {old.get(k)!r} -> {v!r}" for k, v in settings.as_dict().items()
                             if old.get(k) != v)
            raise UserError(f"{out}: resume=True with other settings than the interrupted run "
                            f"({diff}); use the same settings, another output_dir, or "
                            "resume=False")
        log(f"resuming the demo in {out}")
    else:
        previous = [n for n in OWNED if (out / n).exists()]
        if previous:
            log(f"replacing the previous demo outputs in {out} (use --resume to continue a run)")
            for n in previous:
                remove(out / n)
    markers.mkdir(exist_ok=True)
    write_json(saved, settings.as_dict())


def _stage(ctx: Context, index: int, total: int, name: str, title: str, outputs: list[str],
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
            remove(ctx.path(o))
    remove(marker)
    ctx.log(f"{head} ...  (elapsed {clock(time.perf_counter() - ctx.t_start)})")
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
    ctx = Context(out, s, resume, progress, flush_say)
    load_start = os.getloadavg()
    n = 8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        # PyTorch eager (bench baseline) warns about the generator's even 'same' kernels
        warnings.filterwarnings("ignore", message="Using padding='same'")
        _stage(ctx, 1, n, "mc", "simulate the MC reference and the MC floor sample",
               ["mc/reference.h5", "mc/floor.h5"], lambda: stages.stage_mc(ctx))
        _stage(ctx, 2, n, "gan-fp32", "generate with the GAN in FP32", ["gan/fp32.h5"],
               lambda: stages.stage_gan_fp32(ctx))
        _stage(ctx, 3, n, "validate-fp32", "validate GAN FP32 vs MC", ["validate/fp32"],
               lambda: stages.stage_validate(ctx, "gan/fp32.h5", "validate/fp32"))
        if s.tuning:
            _stage(ctx, 4, n, "tune", "tune INT8 with the physics criterion (1% relative)",
                   ["tune"], lambda: stages.stage_tune(ctx), keep_partial=True)
        else:
            _stage(ctx, 4, n, "tune", "quantize to INT8 (tuning skipped)", ["tune"],
                   lambda: stages.stage_quantize_only(ctx))
        what = "the tuned model" if ctx.results["tune"].get("kind") == "tuned" else "full INT8"
        _stage(ctx, 5, n, "gan-tuned", f"generate with {what}", ["gan/tuned.h5"],
               lambda: stages.stage_gan_tuned(ctx))
        _stage(ctx, 6, n, "validate-tuned", f"validate {what} vs MC", ["validate/tuned"],
               lambda: stages.stage_validate(ctx, "gan/tuned.h5", "validate/tuned"))
        _stage(ctx, 7, n, "bench", "benchmark FP32 vs INT8 vs tuned, 1 vs N streams, and MC",
               ["bench"], lambda: stages.stage_bench(ctx))
        flush_say(f"[8/8] write the report ...  (elapsed {clock(time.perf_counter() - ctx.t_start)})")
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
    flush_say(f"done in {clock(demo['total_seconds'])}: " + summary["one_line"])
    return demo
