"""The demo's two figures, the case study's (matplotlib Agg, the physics plots' mplhep style).

* Figure 1: (a) the 3DGAN shape metric of the GAN in FP32, full INT8 and tuned, with the
  MC-vs-MC floor as a line; (b) throughput of PyTorch FP32 eager, OpenVINO FP32, INT8, tuned.
* Figure 2: throughput per precision, 1 stream x 1 thread, 1 stream x C threads, C streams x 1
  thread.

Both take the demo's headline summary (:func:`caloforge.demo.report.build_summary`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from caloforge.atomic import atomic_path

#: Bar colours per model (mplhep's colour-blind-safe palette; the floor keeps the validation
#: plots' floor style).
COLOURS = {"torch": "#9c9ca1", "fp32": "#f89c20", "int8": "#e42536", "tuned": "#964a8b"}
LAYOUT_COLOURS = ("#9c9ca1", "#5790fc", "#e42536")


def _plt() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    return plt, mplhep


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    plt, _ = _plt()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return Path(path)


def _fmt(v: float) -> str:
    if v >= 100:
        return f"{v:.0f}"
    if v >= 1:
        return f"{v:.3g}"
    return f"{v:.3g}"


def _metric_panel(ax: Any, s: dict[str, Any]) -> None:
    from caloforge.physics.plots import STYLES

    bars: list[tuple[str, float | None, str, str]] = []  # label, value, colour, hatch
    m = s["metric"]
    tuned_label = s["tuned_label"]
    bars.append(("FP32\n(validation)", m["fp32"], COLOURS["fp32"], ""))
    bars.append((f"{tuned_label}\n(validation)", m["tuned"], COLOURS["tuned"], ""))
    tm = s.get("tuner_metric") or {}
    if tm:
        bars.append(("FP32\n(tuner)", tm.get("fp32"), COLOURS["fp32"], "//"))
        bars.append(("all INT8\n(tuner)", tm.get("all_int8"), COLOURS["int8"], "//"))
        bars.append(("tuned\n(tuner)", tm.get("tuned"), COLOURS["tuned"], "//"))
    x = np.arange(len(bars))
    vals = [b[1] if b[1] is not None else 0.0 for b in bars]
    for i, (_, v, colour, hatch) in enumerate(bars):
        ax.bar(i, v or 0.0, 0.7, color=colour, hatch=hatch, edgecolor="black", linewidth=0.6)
        ax.text(i, (v or 0.0), "n/a" if v is None else _fmt(v), ha="center", va="bottom",
                fontsize=10)
    floor = m.get("floor")
    positive = [v for v in vals if v > 0] + ([floor] if floor else [])
    if floor:
        st = STYLES["floor"]
        ax.axhline(floor, color=st["color"], linestyle=st["linestyle"], linewidth=2,
                   label=f"MC vs MC floor {_fmt(floor)}")
        ax.legend(loc="upper right", fontsize=10)
    if positive and max(positive) / min(positive) > 30:
        ax.set_yscale("log")
        ax.set_ylim(min(positive) / 3, max(positive) * 6)
    else:
        ax.set_ylim(0, max(positive or [1.0]) * 1.35)
    ax.set_xticks(x, [b[0] for b in bars], fontsize=10)
    ax.set_ylabel("3DGAN shape metric vs MC (lower is better)", fontsize=12)
    ax.set_title("(a) physics: FP32 vs INT8", fontsize=13)
    ax.text(0.02, 0.97, "case study: FP32 0.0612, INT8 0.0532", transform=ax.transAxes,
            fontsize=9, va="top")


def _throughput_panel(ax: Any, s: dict[str, Any]) -> None:
    t = s["throughput_best"]
    tuned_label = s["tuned_label"]
    items = [("PyTorch\nFP32 eager", "torch"), ("OpenVINO\nFP32", "fp32"),
             ("INT8\n(full)", "int8")] + ([(f"{tuned_label}", "tuned")] if t.get("tuned") else [])
    fp32 = (t.get("fp32") or {}).get("median")
    for i, (_, key) in enumerate(items):
        row = t.get(key)
        if not row:
            continue
        v = row["median"]
        err = [[v - row["low"]], [row["high"] - v]]
        ax.bar(i, v, 0.7, color=COLOURS[key], edgecolor="black", linewidth=0.6, yerr=err,
               capsize=4)
        ratio = f"\n{v / fp32:.2f}x FP32" if fp32 else ""
        ax.text(i, row["high"], f"{v:.0f}/s{ratio}\n{row['layout']}", ha="center", va="bottom",
                fontsize=9)
    ax.set_xticks(np.arange(len(items)), [i[0] for i in items], fontsize=10)
    ax.set_ylabel("showers / s (best layout, median)", fontsize=12)
    top = max((t[k]["high"] for _, k in items if t.get(k)), default=1.0)
    ax.set_ylim(0, top * 1.45)
    ax.set_title(f"(b) throughput, batch {s['batch']}", fontsize=13)
    ax.text(0.02, 0.97, "case study: INT8 1.8x FP32", transform=ax.transAxes, fontsize=9,
            va="top")


def figure1(summary: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """FP32 vs INT8: physics metric (with the MC floor) and throughput."""
    plt, hep = _plt()
    with plt.style.context(hep.style.CMS), plt.rc_context({"font.size": 12}):
        fig, (a, b) = plt.subplots(1, 2, figsize=(14, 6))
        _metric_panel(a, summary)
        _throughput_panel(b, summary)
        fig.suptitle(f"Figure 1 — FP32 vs INT8 on {summary['machine_line']}", fontsize=13)
        fig.tight_layout()
        return _save(fig, path)


def figure2(summary: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Single stream vs multistream throughput per precision."""
    plt, hep = _plt()
    c = summary["cores"]
    lays = [("1x1", "1 stream x 1 thread"), (f"1x{c}", f"1 stream x {c} threads"),
            (f"{c}x1", f"{c} streams x 1 thread")]
    lays = list(dict(lays).items())
    per = summary["throughput_layouts"]
    names = [(k, lab) for k, lab in (("fp32", "OpenVINO FP32"), ("int8", "INT8 (full)"),
                                     ("tuned", summary["tuned_label"])) if per.get(k)]
    with plt.style.context(hep.style.CMS), plt.rc_context({"font.size": 12}):
        fig, ax = plt.subplots(figsize=(10, 6))
        w = 0.8 / len(lays)
        top = 1.0
        for j, (lay, label) in enumerate(lays):
            for i, (k, _) in enumerate(names):
                row = per[k].get(lay)
                if not row:
                    continue
                xi = i + (j - (len(lays) - 1) / 2) * w
                v = row["median"]
                ax.bar(xi, v, w, color=LAYOUT_COLOURS[j % 3], edgecolor="black", linewidth=0.6,
                       yerr=[[v - row["low"]], [row["high"] - v]], capsize=3,
                       label=label if i == 0 else None)
                top = max(top, row["high"])
                txt = f"{v:.0f}"
                if lay == f"{c}x1" and per[k].get(f"1x{c}"):
                    txt += f"\n{v / per[k][f'1x{c}']['median']:.2f}x 1x{c}"
                ax.text(xi, row["high"], txt, ha="center", va="bottom", fontsize=9)
        ax.set_xticks(np.arange(len(names)), [n[1] for n in names], fontsize=11)
        ax.set_ylabel("showers / s (median)", fontsize=12)
        ax.set_ylim(0, top * 1.35)
        ax.legend(fontsize=10, loc="upper left")
        ax.set_title(f"Figure 2 — single vs multistream, batch {summary['batch']}, "
                     f"{c} cores (case study: multistream 2.2x)", fontsize=12)
        fig.text(0.99, 0.01, summary["machine_line"], ha="right", fontsize=8)
        fig.tight_layout()
        return _save(fig, path)
