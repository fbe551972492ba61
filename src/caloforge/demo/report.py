"""The demo's summary numbers, ``report.md`` and the two figures.

:func:`build_summary` turns the stage results into the headline numbers (``demo.json``'s
``headline``); :func:`write_report` writes ``report.md`` and the figures with
:class:`caloforge.physics.report.Report`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from caloforge.demo.reading import CASE_STUDY, reading
from caloforge.demo.settings import DemoSettings
from caloforge.physics.report import Report, fmt
from caloforge.physics.validate import HEADLINE
from caloforge.runtime.bench import layouts as bench_layouts
from caloforge.workflows.bench_rows import TUNED, BenchReport, BenchRow

FIG1 = "fig1_fp32_vs_int8.png"
FIG2 = "fig2_multistream.png"


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b or not math.isfinite(a) or not math.isfinite(b):
        return None
    return a / b


def _times(r: float) -> str:
    return f"{r:,.0f}x" if r >= 100 else f"{r:.3g}x"


def _pct(v: float | None) -> str | None:
    return None if v is None else f"{v:.0%}"


def _row(r: BenchRow | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {"median": r.median, "low": r.low, "high": r.high, "layout": r.layout, "key": r.key}


def build_summary(results: dict[str, dict[str, Any]], settings: DemoSettings) -> dict[str, Any]:
    """Headline numbers from the stage results (every number of the report's table)."""
    v_fp32, v_tuned = results["validate-fp32"], results["validate-tuned"]
    tune, mc = results["tune"], results["mc"]
    bench = BenchReport.from_json(results["bench"])
    machine = bench.machine
    cores = int(machine["cores"])
    tuned_kind = tune.get("kind", "tuned")
    tuned_label = "tuned INT8" if tuned_kind == "tuned" else "INT8 (full, untuned)"
    floor = (v_fp32.get("floor") or {}).get("shape_metric")
    metric = {"fp32": v_fp32["candidate"].get("shape_metric"),
              "tuned": v_tuned["candidate"].get("shape_metric"), "floor": floor}
    metric["fp32_over_floor"] = _ratio(metric["fp32"], floor)
    metric["tuned_over_floor"] = _ratio(metric["tuned"], floor)
    metric["tuned_over_fp32"] = _ratio(metric["tuned"], metric["fp32"])
    tuner = None
    if tuned_kind == "tuned" and not tune.get("skipped_tuning"):
        tuner = {"fp32": tune.get("baseline_metric"), "all_int8": tune.get("all_int8_metric"),
                 "tuned": tune.get("best_metric"), "passed": tune.get("passed"),
                 "int8_share": tune.get("best_int8_share"), "config": tune.get("best_config"),
                 "trials": len(tune.get("trials", [])), "stop_reason": tune.get("stop_reason"),
                 "latency_speedup": tune.get("latency_speedup"), "events": tune.get("reference_events")}
    has_tuned = bench.best(TUNED) is not None
    best = {"torch": _row(bench.best("fp32", runtime="torch")),
            "fp32": _row(bench.best("fp32")), "int8": _row(bench.best("int8")),
            "tuned": _row(bench.best(TUNED)) if has_tuned else _row(bench.best("int8"))}
    layouts: dict[str, dict[str, Any]] = {}
    for key, prec in (("fp32", "fp32"), ("int8", "int8"), ("tuned", TUNED)):
        rows = {f"{s}x{t}": _row(bench.best(prec, s, t)) for s, t in bench_layouts(cores)}
        if any(rows.values()):
            layouts[key] = {k: v for k, v in rows.items() if v}
    med = {k: (v or {}).get("median") for k, v in best.items()}
    gain = {k: _ratio((v.get(f"{cores}x1") or {}).get("median"),
                      (v.get(f"1x{cores}") or {}).get("median")) for k, v in layouts.items()}
    best_gan = max((r for r in best.values() if r and r["key"] and not r["key"].startswith("torch")),
                   key=lambda r: r["median"])
    mc100 = None if bench.mc is None else bench.mc.showers_per_s
    s_, t_ = (int(v) for v in best_gan["layout"].split("x"))
    used = min(cores, s_ * t_)  # cores the fastest GAN configuration runs on
    speedup = {
        "int8_vs_fp32": _ratio(med["int8"], med["fp32"]),
        "tuned_vs_fp32": _ratio(med["tuned"], med["fp32"]),
        "fp32_vs_torch": _ratio(med["fp32"], med["torch"]),
        "best_vs_torch": _ratio(best_gan["median"], med["torch"]),
        "multistream_gain": gain,
    }
    gan_vs_mc = {
        "gan_best_showers_per_s": best_gan["median"], "gan_best_config": best_gan["key"],
        "mc_showers_per_s_100gev_1core": mc100,
        "mc_showers_per_s_spectrum_1core": mc.get("showers_per_s_spectrum"),
        "gan_vs_mc_1core": _ratio(best_gan["median"], mc100),
        "gan_cores_used": used,
        "gan_vs_mc_per_core": _ratio(best_gan["median"], None if mc100 is None else mc100 * used),
        "cores": cores,
    }
    from caloforge.gan.shipped import default_architecture, default_model_card, describe

    card = default_model_card()
    card_validation = card.get("validation") or {}
    machine_line = f"{machine['cpu']}, {cores} cores"
    one = (f"3DGAN metric FP32 {fmt(metric['fp32'])} / {tuned_label} {fmt(metric['tuned'])} "
           f"(MC floor {fmt(floor)}); {tuned_label} {fmt(speedup['tuned_vs_fp32'], 3)}x and full "
           f"INT8 {fmt(speedup['int8_vs_fp32'], 3)}x FP32 throughput; multistream "
           f"{fmt(gain.get('fp32'), 3)}x (FP32); GAN best {best_gan['median']:.0f} showers/s = "
           f"{fmt(gan_vs_mc['gan_vs_mc_1core'], 3)}x the MC on 1 core at 100 GeV")
    return {
        "tuned_label": tuned_label, "tuned_kind": tuned_kind, "metric": metric,
        "tuner_metric": tuner, "throughput_best": best, "throughput_layouts": layouts,
        "speedup": speedup, "gan_vs_mc": gan_vs_mc, "batch": settings.bench_batch,
        "cores": cores, "machine_line": machine_line, "case_study": CASE_STUDY,
        "model_status": card.get("status", "trained"), "one_line": one,
        "model": describe(card), "architecture": default_architecture(card),
        "card_verdict": card_validation.get("verdict"),
        "card_verdict_events": (card_validation.get("n_events") or {}).get("candidate"),
        "card_verdict_reference": card_validation.get("reference"),
    }


def _intro(rep: Report, demo: dict[str, Any]) -> None:
    """Set-up: versions, machine, load, samples, energies."""
    h, st, s, mach = demo["headline"], demo["stages"], demo["settings"], demo["machine"]
    load = demo["load_average"]
    rep.text(
        f"\nThe whole chain on this machine with the shipped model and the built-in Monte Carlo: "
        f"MC reference -> GAN FP32 -> validation -> INT8 tuning -> validation -> benchmark. "
        f"Mode **{'quick' if s['quick'] else 'default'}**, seed {s['seed']}, total wall time "
        f"{demo['total_seconds'] / 60:.1f} min.\n\n"
        f"- caloforge {mach['caloforge']}, Python {mach['python']}, numpy {mach['numpy']}, "
        f"torch {mach['torch']}, OpenVINO {mach['openvino']}, NNCF {mach['nncf']}\n"
        f"- CPU: {mach['cpu']}, {mach['cores']} cores usable, "
        f"{' '.join(mach['isa_flags']) or 'no AVX-512/AMX'}; {mach['platform']}\n"
        f"- load average (1/5/15 min) at start {', '.join(f'{v:.1f}' for v in load['start'])}, "
        f"at end {', '.join(f'{v:.1f}' for v in load['end'])}: the machine may be shared with "
        "other jobs; throughputs are medians of interleaved rounds, with min/max\n"
        f"- model: the shipped generator, {h.get('model', '3DGAN')} (status: "
        f"{h['model_status']})\n"
        f"- samples: {s['n_events']} MC reference events, {s['n_events']} MC floor events "
        f"(independent seed, same energies: the MC-vs-MC statistical floor), {s['n_events']} GAN "
        "events per precision at the reference's energies, same latent noise for FP32 and INT8\n"
        f"- energies: event i in 3DGAN metric bin i mod 7 "
        f"({', '.join(f'{c:g}' for c in st['mc']['spectrum']['bins_gev'])} GeV), uniform within "
        f"+-{st['mc']['spectrum']['half_window_gev']:g} GeV of the bin centre, clipped to the "
        f"trained range {st['mc']['spectrum']['trained_range_gev'][0]:g}-"
        f"{st['mc']['spectrum']['trained_range_gev'][1]:g} GeV; "
        f"{min(st['mc']['spectrum']['events_per_bin'].values())}-"
        f"{max(st['mc']['spectrum']['events_per_bin'].values())} events per bin\n")


def _headline_rows(h: dict[str, Any]) -> list[list[Any]]:
    """The headline table: this machine vs the case study."""
    tl = h["tuned_label"]
    m, sp, g = h["metric"], h["speedup"], h["gan_vs_mc"]
    t = h["throughput_best"]
    tm = h.get("tuner_metric") or {}
    cs = CASE_STUDY
    c = h["cores"]

    def thr(key: str) -> str:
        r = t.get(key)
        return "–" if not r else f"{r['median']:.1f} ({r['layout']}, {r['low']:.0f}-{r['high']:.0f})"

    rows: list[list[Any]] = [
        ["3DGAN metric, GAN FP32 vs MC (validation)", m["fp32"], cs["metric_fp32"]],
        [f"3DGAN metric, {tl} vs MC (validation)", m["tuned"], cs["metric_int8"]],
        ["3DGAN metric, MC floor (MC vs MC)", m["floor"], None],
        ["FP32 metric / floor", m["fp32_over_floor"], None],
        [f"{tl} metric / FP32 metric", m["tuned_over_fp32"], cs["metric_int8"] / cs["metric_fp32"]],
    ]
    if tm:
        rows += [
            [f"tuner: FP32 metric ({tm.get('events')} reference events)", tm.get("fp32"), None],
            ["tuner: all-INT8 metric", tm.get("all_int8"), None],
            ["tuner: tuned metric", tm.get("tuned"), None],
            ["tuner: 1% criterion met", tm.get("passed"), True],
            ["tuner: FLOPs share in INT8", _pct(tm.get("int8_share")), "~50% of the network"],
        ]
    rows += [
        ["throughput PyTorch FP32 eager [showers/s]", thr("torch"), None],
        ["throughput OpenVINO FP32 [showers/s]", thr("fp32"), None],
        ["throughput INT8 full [showers/s]", thr("int8"), None],
        [f"throughput {tl} [showers/s]", thr("tuned"), None],
        ["INT8 full / FP32", sp["int8_vs_fp32"], cs["int8_vs_fp32"]],
        [f"{tl} / FP32", sp["tuned_vs_fp32"], cs["int8_vs_fp32"]],
        ["OpenVINO FP32 / PyTorch eager", sp["fp32_vs_torch"], None],
        ["best / PyTorch eager", sp["best_vs_torch"], None],
    ]
    for k, v in sp["multistream_gain"].items():
        label = {"fp32": "FP32", "int8": "INT8 full", "tuned": tl}[k]
        rows.append([f"multistream {c}x1 / 1x{c}, {label}", v, cs["multistream_gain"]])
    rows += [
        ["MC showers/s, 100 GeV, 1 core", g["mc_showers_per_s_100gev_1core"], None],
        ["MC showers/s, demo spectrum 50-500 GeV, 1 core (incl. HDF5)",
         g["mc_showers_per_s_spectrum_1core"], None],
        [f"GAN best ({g['gan_best_config']}) [showers/s]", g["gan_best_showers_per_s"], None],
        ["GAN best / MC on 1 core (100 GeV)", g["gan_vs_mc_1core"],
         f"{cs['gan_vs_geant4']:,.0f} (vs Geant4)"],
        [f"GAN best / MC core for core ({g['gan_cores_used']} core(s) each, 100 GeV)",
         g["gan_vs_mc_per_core"], None],
    ]
    return rows


def _headline_and_speed(rep: Report, h: dict[str, Any]) -> None:
    """The headline table, the two figures and the GAN-vs-MC paragraph."""
    tm = h.get("tuner_metric") or {}
    g = h["gan_vs_mc"]
    c = h["cores"]
    rows = _headline_rows(h)
    rep.heading("Headline numbers")
    rep.table(["quantity", "this machine", "case study"], rows)
    rep.text("\nThe 3DGAN metric is lower-is-better (Khattak et al., EPJC 82 (2022) 386). "
             "\"validation\" rows are `caloforge validate` on the full independent samples; "
             "\"tuner\" rows are the tuner's own evaluations (other latent noise, the first "
             f"{tm.get('events', '–')} reference events). Throughputs: batch {h['batch']}, at "
             "100 GeV, median (layout streams x threads, min-max). Every number is in `demo.json`.")
    rep.heading("Figure 1 — FP32 vs INT8: physics metric and throughput")
    rep.image(FIG1, "Figure 1: FP32 vs INT8")
    rep.heading("Figure 2 — single stream vs multistream")
    rep.image(FIG2, "Figure 2: single vs multistream")
    rep.heading("GAN vs MC speed")
    if g["gan_vs_mc_1core"] is not None:
        rep.text(f"\nThe fastest GAN configuration ({g['gan_best_config']}, "
                 f"{g['gan_cores_used']} of {c} cores) makes "
                 f"**{g['gan_best_showers_per_s']:.0f} showers/s**. The caloforge "
                 f"GFlash MC makes {g['mc_showers_per_s_100gev_1core']:.0f} showers/s on one core "
                 f"at 100 GeV (median single-shower time) and "
                 f"{fmt(g['mc_showers_per_s_spectrum_1core'])} showers/s over the demo's 50-500 "
                 f"GeV spectrum (stage 1, incl. writing). GAN/MC = "
                 f"**{g['gan_vs_mc_1core']:.3g}x** (vs the MC on 1 core, both at 100 GeV; the "
                 f"GAN's cost does not depend on the energy, the MC's grows with it), "
                 f"{g['gan_vs_mc_per_core']:.3g}x core for core. The case study's 67,000x compares "
                 "with full Geant4, not with a parametrised MC.")
    else:
        rep.text("\nThe MC was not timed.")


def _validation(rep: Report, st: dict[str, Any], tl: str) -> None:
    rep.heading("Validation")
    for key, label in (("validate-fp32", "GAN FP32"), ("validate-tuned", tl)):
        v = st[key]
        folder = str(Path(v["report"]).parent)
        rep.heading(f"{label} vs MC — [{v['report']}]({v['report']})", 3)
        cand, fl = v["candidate"], v.get("floor") or {}
        rep.table(["metric", label, "MC floor (MC vs MC)"],
                  [[name.strip(), cand.get(k), fl.get(k)] for k, name in HEADLINE if k in cand])
        for name in v.get("plots", {}).values():
            rep.image(f"{folder}/{name}", f"{label}: {Path(name).stem}")


def _tuning(rep: Report, st: dict[str, Any]) -> None:
    tn = st["tune"]
    rep.heading("INT8 tuning")
    if tn.get("skipped_tuning"):
        rep.text(f"\nTuning skipped (--skip-tuning): the INT8 model is `{tn['model']}`, the "
                 "fully quantized shipped model.")
    else:
        rep.text(f"\n{tn['summary']}. Strategy `{tn['strategy']}`, criterion {tn['criterion']}, "
                 f"timeout {tn['timeout_s']:g} s, stopped: {tn['stop_reason']}. Model "
                 f"`{tn['model']}`; the tuner's report: [tune/report.md](tune/report.md).")
        if tn.get("fallback"):
            rep.text(f"\n**{tn['fallback']}.**")
        if not tn.get("passed"):
            rep.text("\n**No configuration met the criterion in the time given; the demo "
                     "continued with the best model by metric.**")
        rep.table(["trial", "configuration", "metric", "passed", "INT8 FLOPs share", "note"],
                  [[i + 1, tr["config"], tr["metric"], tr["passed"], _pct(tr["int8_share"]),
                    tr["note"]]
                   for i, tr in enumerate(tn.get("trials", []))])


def _bench(rep: Report, st: dict[str, Any], h: dict[str, Any], demo: dict[str, Any]) -> None:
    b = BenchReport.from_json(st["bench"])
    rep.heading("Benchmark")
    rep.text(f"\nAll configurations timed in rotation ({b.settings['rounds']} rounds of "
             f"~{b.settings['sample_seconds']:g} s), batch {h['batch']}, 100 GeV. "
             "Full table: [bench/bench.txt](bench/bench.txt), [bench/bench.json](bench/bench.json).")
    rep.table(["configuration", "showers/s", "min", "max", "x OpenVINO FP32"],
              [[r.key, r.median, r.low, r.high, r.vs_openvino_fp32_best] for r in b.rows])
    rep.image("bench/bench.png", "caloforge bench chart")
    rep.heading("Stage timings")
    rep.table(["stage", "seconds", "note"],
              [[tm_["title"], tm_["seconds"], "done in an earlier run (--resume)"
                if tm_["skipped"] else ""] for tm_ in demo["timings"]]
              + [["total wall time of this run", demo["total_seconds"], ""]])


def write_report(out: Path, demo: dict[str, Any]) -> dict[str, Any]:
    """Write ``report.md`` and the two figures into ``out``; returns their file names."""
    from caloforge.demo.figures import figure1, figure2

    h = demo["headline"]
    figure1(h, out / FIG1)
    figure2(h, out / FIG2)
    rep = Report("caloforge demo")
    _intro(rep, demo)
    _headline_and_speed(rep, h)
    rep.heading("Reading")
    rep.text("\n" + reading(h, demo))
    _validation(rep, demo["stages"], h["tuned_label"])
    _tuning(rep, demo["stages"])
    _bench(rep, demo["stages"], h, demo)
    rep.write(out / "report.md")
    return {"report": "report.md", "figures": [FIG1, FIG2]}


__all__ = ["CASE_STUDY", "build_summary", "write_report"]
