"""Tuning report: markdown (trial table, precision map, speed-up, INT8 share) + PNG."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from caloforge.atomic import atomic_path, write_text
from caloforge.quant.config import BF16, FP32, INT8
from caloforge.quant.params import describe

if TYPE_CHECKING:  # pragma: no cover
    from caloforge.quant.tuner import TuningResult

_COLOURS = {INT8: "tab:green", BF16: "tab:orange", FP32: "tab:blue"}


def _fmt(value: float | None, spec: str = ".4g") -> str:
    return "–" if value is None else format(value, spec)


def _runtime_precision(rp: str) -> str:
    return {"u8": INT8, "i8": INT8, "bf16": BF16, "f32": FP32}.get(rp, rp or "?")


def write_report(result: TuningResult) -> Path:
    """Write ``report.md`` and ``report.png`` into the result's output directory."""
    out = result.output_dir
    png = out / "report.png"
    _plot(result, png)
    md = out / "report.md"
    write_text(md, render_markdown(result, png.name))
    return md


def render_markdown(result: TuningResult, png_name: str = "report.png") -> str:
    best = result.best
    lines = ["# Mixed-precision tuning report", ""]
    lines.append(f"**{result.summary()}**")
    lines.append("")
    lines.append(f"- Strategy: `{result.strategy}`; stop: {result.stop_reason}; "
                 f"wall time {result.wall_s:.1f} s; metric evaluations run {result.evaluations_run} "
                 f"({len(result.trials)} in history); output-error probes {len(result.probes)}")
    lines.append(f"- Criterion: {result.criterion.describe(result.baseline_metric)}")
    base_ms = None if result.baseline_latency_s is None else result.baseline_latency_s * 1e3
    best_ms = None if best is None or best.latency_s is None else best.latency_s * 1e3
    lines.append(f"- Latency (batch {result.batch}, median): FP32 {_fmt(base_ms)} ms, "
                 f"tuned {_fmt(best_ms)} ms; speed-up {_fmt(result.speedup, '.2f')}x")
    if best is not None and best.int8_share is not None:
        lines.append(f"- Share of the network's FLOPs (conv/matmul layers) running INT8 "
                     f"(runtime graph): {best.int8_share:.1%}")
    if best is not None:
        tried = list(dict.fromkeys(describe(t.config.params) for t in result.trials))
        lines.append(f"- Quantization parameters (preset/activation range): "
                     f"`{describe(best.config.params)}`; sets tried: "
                     + ", ".join(f"`{t}`" for t in tried))
    lines.append(f"- Model: `{result.model_path.name if result.model_path else '–'}`; "
                 f"QDQ ONNX: {result.qdq_status or 'not requested'}")
    lines += ["", f"![metric vs latency and precision map]({png_name})", ""]

    lines += ["## Per-layer precision (best configuration)", "",
              "| layer | type | MFLOPs/sample | requested | runtime (compiled graph) |",
              "|---|---|---|---|---|"]
    for layer in result.layers:
        req = best.config.precisions.get(layer.name, FP32) if best else "–"
        rt = best.runtime.get(layer.name, "") if best else ""
        flag = "" if not rt or _runtime_precision(rt) == req else " ⚠ differs"
        lines.append(f"| `{layer.name}` | {layer.op_type} | {layer.flops / 1e6:.3g} | {req} | "
                     f"{rt or '?'}{flag} |")
    lines += ["", "## Trials", "",
              "| # | metric | pass | rel. output error | latency ms | INT8 FLOPs | wall s | configuration | note |",
              "|---|---|---|---|---|---|---|---|---|"]
    front = {t.key for t in result.pareto_front}
    for i, t in enumerate(result.trials, start=1):
        mark = " ★" if best is not None and t.key == best.key else (" ◆" if t.key in front else "")
        lines.append(
            f"| {i}{mark} | {_fmt(t.metric, '.6g')} | {'yes' if t.passed else 'no'} | "
            f"{_fmt(t.error, '.3g')} | {_fmt(None if t.latency_s is None else t.latency_s * 1e3)} | "
            f"{_fmt(None if t.int8_share is None else t.int8_share * 100, '.0f')}% | "
            f"{t.wall_s:.2f} | {t.config.summary()} | {t.note} |")
    lines += ["", "★ best, ◆ Pareto front (metric vs latency)."]
    if result.probes:
        lines += ["", "## Sensitivity probes (layer alone in INT8, relative L2 output error)", "",
                  "| layer | error |", "|---|---|"]
        for p in sorted(result.probes, key=lambda r: -(r.error or 0.0)):
            name = p.config.layers_in(INT8)
            lines.append(f"| `{', '.join(name)}` | {_fmt(p.error, '.3g')} |")
    return "\n".join(lines) + "\n"


def _plot(result: TuningResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    timed = [t for t in result.trials if t.latency_s is not None and t.metric is not None]
    front = [t for t in result.pareto_front]
    if timed:
        ax1.scatter([(t.latency_s or 0.0) * 1e3 for t in timed], [t.metric for t in timed],
                    c=["tab:green" if t.passed else "tab:red" for t in timed], s=25,
                    label="candidates (green: pass)")
    if front:
        ax1.plot([(t.latency_s or 0.0) * 1e3 for t in front], [t.metric for t in front], "k--", lw=1,
                 label="Pareto front")
    if result.baseline_latency_s is not None:
        ax1.scatter([result.baseline_latency_s * 1e3], [result.baseline_metric], marker="s",
                    c="tab:blue", s=50, label="FP32")
    ax1.axhline(result.criterion.threshold(result.baseline_metric), color="grey", lw=0.8,
                ls=":", label="criterion threshold")
    best = result.best
    if best is not None and best.latency_s is not None and best.metric is not None:
        ax1.scatter([best.latency_s * 1e3], [best.metric], marker="*", s=200, c="gold",
                    edgecolors="k", label="best", zorder=5)
    ax1.set_xlabel(f"latency per batch of {result.batch} [ms] (median)")
    ax1.set_ylabel("metric")
    ax1.set_title("metric vs latency")
    ax1.legend(fontsize=7)

    names = [layer.name for layer in result.layers]
    flops = [layer.flops / 1e6 for layer in result.layers]
    precisions = [(_runtime_precision(best.runtime.get(n, "")) if best and best.runtime.get(n)
                   else (best.config.precisions.get(n, FP32) if best else FP32)) for n in names]
    ax2.barh(range(len(names)), flops, color=[_COLOURS.get(p, "tab:grey") for p in precisions])
    ax2.set_yticks(range(len(names)))
    ax2.set_yticklabels([n if len(n) <= 32 else "…" + n[-31:] for n in names], fontsize=7)
    ax2.invert_yaxis()
    ax2.set_xlabel("MFLOPs per sample")
    ax2.set_title("runtime precision: green INT8, orange BF16, blue FP32", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)

