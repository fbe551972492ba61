"""The bench's outputs: the text tables, the bar chart, ``bench.json``."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from caloforge.atomic import atomic_path, write_json, write_text
from caloforge.workflows.bench import OV_PRECISIONS
from caloforge.workflows.bench_rows import TUNED, BenchReport, BenchRow


def _rate(r: BenchRow | None) -> str:
    return "-" if r is None else f"{r.key} {r.median:.1f}/s"


def _target_lines(report: BenchReport) -> list[str]:
    s = report.summary
    fp32, torch_best = s.best("fp32"), s.torch_fp32_best
    plain_fp32, plain_int8 = s.best("fp32", "openvino-plain"), s.best("int8", "openvino-plain")
    j = s.to_json()
    lines = [f"best PyTorch FP32 eager: {_rate(torch_best)}",
             f"best OpenVINO FP32:      {_rate(fp32)} ({j['openvino_fp32_vs_torch']:.2f}x torch)",
             f"best OpenVINO INT8:      {_rate(s.best('int8'))}"]
    has_plain = plain_fp32 is not None and plain_int8 is not None
    if has_plain:
        lines.append(f"OpenVINO FP32 / INT8 without the upsample-conv rewrite: {_rate(plain_fp32)} "
                     f"/ {_rate(plain_int8)}; rewrite gain (FP32) {j['rewrite_gain_fp32']:.2f}x")
    lines.append(f"INT8 / FP32 (OpenVINO, best settings): {j['int8_vs_fp32']:.2f}x (target >= 4)"
                 + (f"; vs FP32 without rewrite {j['int8_vs_fp32_plain']:.2f}x; "
                    f"without rewrite on both {j['plain_int8_vs_plain_fp32']:.2f}x"
                    if has_plain else ""))
    if s.best(TUNED) is not None:
        lines.append(f"tuned / FP32 (OpenVINO, best settings): {s.vs_fp32(TUNED):.2f}x "
                     f"(target >= 4); best tuned {_rate(s.best(TUNED))}")
    if s.best("bf16") is not None:
        lines.append(f"BF16 / FP32 (OpenVINO, best settings): {s.vs_fp32('bf16'):.2f}x")
    lines.append(f"best caloforge / best PyTorch eager:   {j['best_vs_torch']:.2f}x (target >= 12)")
    for m in s.multistream():
        c = m.cores
        lines.append(f"multistream {m.precision} b{m.batch}: 1x1 {m.one:.1f}/s, {c}x1 "
                     f"{m.multi:.1f}/s, 1x{c} {m.wide:.1f}/s; efficiency {m.efficiency:.0%} "
                     f"(target >= 95%), gain vs 1 stream x all threads {m.gain_vs_1xall:.2f}x")
    return lines


def format_table(report: BenchReport) -> str:
    """Plain-text table of showers/s and ratios, and the target summary."""
    lines = [f"{'configuration':<32} {'showers/s':>10} {'min':>8} {'max':>8} "
             f"{'x torch':>8} {'x OV fp32':>9}"]
    for r in report.rows:
        lines.append(f"{r.key:<32} {r.median:>10.1f} {r.low:>8.1f} {r.high:>8.1f} "
                     f"{r.vs_torch_fp32_best:>8.2f} {r.vs_openvino_fp32_best:>9.2f}")
    lines.append("")
    lines += _target_lines(report)
    if report.mc is not None:
        vs = report.best_vs_mc
        lines.append(f"caloforge MC at {report.mc.energy_gev:g} GeV: {report.mc.showers_per_s:.1f} "
                     f"showers/s; best caloforge / MC = {vs if vs is not None else math.nan:.2f}x")
    for k, v in report.physics.items():
        lines.append(f"physics {k:<16} rel. L2 vs OV FP32 {v.rel_l2_vs_openvino_fp32:.3g}"
                     + (f", 3DGAN metric vs MC {v.metric_vs_mc:.4f}"
                        if v.metric_vs_mc is not None else ""))
    for g in report.end_to_end:
        lines.append(f"to disk {g.precision} {g.layout} ({g.compression}): "
                     f"{g.to_disk_showers_per_s:.0f}/s vs engine {g.engine_showers_per_s:.0f}/s = "
                     f"{g.fraction_of_engine:.0%} (target >= 80%; marginal, {g.events[0]} -> "
                     f"{g.events[1]} showers), {g.file_mb / g.events[1] * 1e3:.1f} KB/shower")
    disk = {g.precision: g.to_disk_showers_per_s for g in report.end_to_end}
    if "int8" in disk and "fp32" in disk:
        lines.append(f"to disk INT8 / FP32: {disk['int8'] / disk['fp32']:.2f}x (target >= 2x)")
    m = report.machine
    lines.append(f"machine: {m['cpu']}, {m['cores']} cores, {' '.join(m['isa_flags'])}; "
                 f"{m['note']}")
    return "\n".join(lines)


def format_rows(report: BenchReport) -> str:
    """Short table of the rows (showers/s median, min, max, ratio to OpenVINO FP32) + MC."""
    lines = [f"{'configuration':<32} {'showers/s':>10} {'min':>8} {'max':>8} {'x OV fp32':>9}"]
    for r in report.rows:
        lines.append(f"{r.key:<32} {r.median:>10.1f} {r.low:>8.1f} {r.high:>8.1f} "
                     f"{r.vs_openvino_fp32_best:>9.2f}")
    mc = report.mc
    if mc is not None:
        lines.append(f"caloforge MC, {mc.energy_gev:g} GeV, 1 core: {mc.showers_per_s:.1f} "
                     f"showers/s ({mc.seconds_per_shower_median * 1e3:.2f} ms per shower)")
    m = report.machine
    lines.append(f"machine: {m['cpu']}, {m['cores']} cores, {' '.join(m['isa_flags'])}; "
                 f"{m['note']}")
    return "\n".join(lines)


def plot(report: BenchReport, path: str | os.PathLike[str]) -> None:
    """Bar chart (PNG): best showers/s per precision, 1 stream x all threads vs C streams x 1
    thread (log scale), and the ratios to PyTorch FP32 eager."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report.rows
    c = int(report.machine["cores"])
    groups = [("torch", "fp32", "PyTorch\nFP32 eager")] + [
        ("openvino", p, f"OpenVINO\n{p.upper()}") for p in (*OV_PRECISIONS, TUNED)
        if any(r.precision == p and r.runtime == "openvino" for r in rows)]
    lays = [(1, 1, "1 stream x 1 thread"), (1, c, f"1 stream x {c} threads"),
            (c, 1, f"{c} streams x 1 thread")]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / len(lays)
    torch_best = getattr(report.summary.torch_fp32_best, "median", math.nan)
    for j, (s, t, label) in enumerate(lays):
        vals = []
        for rt, p, _ in groups:
            sel = [r.median for r in rows if r.runtime == rt and r.precision == p
                   and r.streams == s and r.threads == t]
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
    fig.suptitle(f"caloforge bench — {report.machine['cpu']}, {c} cores (shared machine)",
                 fontsize=10)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def write_outputs(report: BenchReport, folder: Path) -> list[str]:
    """bench.json, bench.txt (the short table) and bench.png in ``folder``."""
    write_json(folder / "bench.json", report.to_json())
    write_text(folder / "bench.txt", format_rows(report) + "\n")
    plot(report, folder / "bench.png")
    return ["bench.json", "bench.txt", "bench.png"]
