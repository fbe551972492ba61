"""Tuning report: markdown (trial table, precision map, speed-up, INT8 share) + PNG."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from caloforge.atomic import atomic_path, write_text
from caloforge.quant.config import BF16, FP32, INT8
from caloforge.quant.params import describe

if TYPE_CHECKING:  # pragma: no cover
    from caloforge.quant.records import TrialRecord
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
    multi = len(result.metrics) > 1
    lines.append(f"- Criterion: {_criterion_text(result)}")
    if multi:
        lines.append(f"- Limiting metric of the final model: `{best.limiting if best else '–'}`; "
                     f"metric that limited the search: "
                     + (f"`{result.limited_by}`" if result.limited_by else
                        "none (no rejected trial ran more INT8 than the final model)"))
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

    if multi:
        lines += metric_tables(result)
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
              "| # | metric | slack | limited by | pass | rel. output error | latency ms | INT8 FLOPs | wall s | configuration | note |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    front = {t.key for t in result.pareto_front}
    for i, t in enumerate(result.trials, start=1):
        mark = " ★" if best is not None and t.key == best.key else (" ◆" if t.key in front else "")
        lines.append(
            f"| {i}{mark} | {_fmt(t.metric, '.6g')} | {_fmt(t.slack, '.3g')} | {t.limiting or '–'} | "
            f"{'yes' if t.passed else 'no'} | "
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


def _criterion_text(result: TuningResult) -> str:
    describe = getattr(result.criterion, "describe", None)
    if callable(describe):
        return str(describe(result.baseline_metric))
    metrics = result.metrics
    listed = "; ".join(f"`{m.name}` {m.describe_tolerance()}" for m in metrics) \
        if len(metrics) <= 4 else f"{len(metrics)} metrics (tolerances in the table below)"
    return listed + "; every metric must pass; slack = the smallest normalised slack (1 = as " \
        "FP32, 0 = on the threshold)"


def metric_tables(result: TuningResult) -> list[str]:
    """Every metric of the final model against FP32, then every metric of every trial."""
    best = result.best
    base = result.baseline_metrics
    lines = ["## Every metric: final model vs FP32", "",
             "| metric | FP32 | final | tolerance | threshold | normalised slack | pass |",
             "|---|---|---|---|---|---|---|"]
    for m in result.metrics:
        b = base.get(m.name)
        v = best.metrics.get(m.name) if best is not None else None
        slack = None if b is None or v is None else m.normalised_slack(v, b)
        thr = None if b is None else m.threshold(b)
        if b is not None and m.direction == "both":
            thr_text = f"{b - m.allowed_loss(b):.5g} .. {b + m.allowed_loss(b):.5g}"
        else:
            thr_text = _fmt(thr, ".5g")
        flag = "–" if slack is None else ("yes" if slack >= 0 else "**no**")
        lim = " ◀" if best is not None and best.limiting == m.name else ""
        lines.append(f"| `{m.name}`{lim} | {_fmt(b, '.5g')} | {_fmt(v, '.5g')} | "
                     f"{m.describe_tolerance()} | {thr_text} | {_fmt(slack, '.3g')} | {flag} |")
    lines += ["", "◀ the final model's limiting metric.", "",
              "## Every metric, every trial (✗ = fails its tolerance)", "",
              "| metric | FP32 | " + " | ".join(str(i) for i in range(1, len(result.trials) + 1)) + " |",
              "|---|---|" + "---|" * len(result.trials)]
    for m in result.metrics:
        b = base.get(m.name)
        cells = []
        for t in result.trials:
            v = t.metrics.get(m.name)
            bad = v is not None and b is not None and not m.passes(v, b)
            cells.append(_fmt(v, ".4g") + (" ✗" if bad else ""))
        lines.append(f"| `{m.name}` | {_fmt(b, '.4g')} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _plot(result: TuningResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    timed = [t for t in result.trials if t.latency_s is not None and t.metric is not None]
    front = [t for t in result.pareto_front]
    multi = len(result.metrics) > 1

    def y(t: TrialRecord) -> float:
        value = t.slack if multi else t.metric
        return float("nan") if value is None else float(value)

    if timed:
        ax1.scatter([(t.latency_s or 0.0) * 1e3 for t in timed], [y(t) for t in timed],
                    c=["tab:green" if t.passed else "tab:red" for t in timed], s=25,
                    label="candidates (green: pass)")
    if front:
        ax1.plot([(t.latency_s or 0.0) * 1e3 for t in front], [y(t) for t in front], "k--", lw=1,
                 label="Pareto front")
    if result.baseline_latency_s is not None:
        ax1.scatter([result.baseline_latency_s * 1e3], [1.0 if multi else result.baseline_metric],
                    marker="s", c="tab:blue", s=50, label="FP32")
    threshold = 0.0 if multi else result.metrics[0].threshold(result.baseline_metric)
    ax1.axhline(threshold, color="grey", lw=0.8, ls=":", label="criterion threshold")
    best = result.best
    if best is not None and best.latency_s is not None and best.metric is not None:
        ax1.scatter([best.latency_s * 1e3], [y(best)], marker="*", s=200, c="gold",
                    edgecolors="k", label="best", zorder=5)
    ax1.set_xlabel(f"latency per batch of {result.batch} [ms] (median)")
    ax1.set_ylabel("smallest normalised slack" if multi else "metric")
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

