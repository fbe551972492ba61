"""The honest verdict: every metric next to its MC-vs-MC floor, their ratio, and one line.

A raw metric value means little; the same metric of an independent MC sample against the
reference, at the same sample size (the *floor*), is the statistical noise it must be read
against. For each metric (docs/validation.md, "The verdict"):

    ratio = (value - b) / noise,   noise = max(|floor - b|, 2 err(value), 2 err(floor))

with ``b`` = 0.5 for the classifier AUC (chance) and 0 otherwise; ``err`` is the statistical
error where the metric has one (FPD, KPD, AUC, the energy-scan differences). The error terms
keep an unbiased metric whose floor is ~0 (FPD, KPD, AUC - 0.5) from giving a huge ratio out of
noise. A metric is **far above its floor** when ``ratio > FAR_RATIO`` (3), or, for the AUC, also
when AUC > :data:`FAR_AUC` (0.75, the issue-15 target). The verdict is

* **NOT compatible with the MC** if any metric is far above its floor;
* **compatible with the MC at this sample size** if every metric's ratio is <= 2;
* **close to the MC but resolved from it** otherwise;
* without a floor no ratio exists: NOT compatible if the AUC > 0.75, else "no verdict".

Sub-terms of the 3DGAN metric are shown but do not count (their sum does).
"""

from __future__ import annotations

import math
from typing import Any

#: Ratio above which a metric is "far above its floor".
FAR_RATIO = 3.0
#: Ratio up to which a metric is compatible with the floor.
COMPATIBLE_RATIO = 2.0
#: A classifier AUC above this is far from the MC whatever the floor.
FAR_AUC = 0.75

#: (key, label, baseline, counts in the verdict, distribution-level).
METRICS = (
    ("shape_metric", "3DGAN shape metric (P + Q)", 0.0, True, False),
    ("shape_moment_term", "  moment term mean P_b", 0.0, False, False),
    ("shape_profile_term", "  profile term mean Q_b", 0.0, False, False),
    ("sep_power_mean", "mean separation power (high-level features)", 0.0, True, True),
    ("sep_power_spectrum", "separation power, cell-energy spectrum", 0.0, True, True),
    ("corr_mean_diff", "feature correlations, mean |diff.| of rank corr. per energy band",
     0.0, True, True),
    ("fpd", "FPD (N -> inf)", 0.0, True, True),
    ("kpd", "KPD", 0.0, True, True),
    ("classifier_auc", "classifier ROC AUC", 0.5, True, True),
    ("scan_response", "calibrated response, worst |rel. diff.| over energies", 0.0, True, False),
    ("scan_resolution", "calibrated width, worst |rel. diff.|", 0.0, True, True),
    ("scan_hits", "hits > threshold, worst |rel. diff.|", 0.0, True, True),
    ("scan_shower_max", "shower-max layer, worst |diff.| [layers]", 0.0, True, False),
)
SHORT = {"shape_metric": "3DGAN metric", "sep_power_mean": "mean separation power",
         "sep_power_spectrum": "cell-spectrum separation power",
         "corr_mean_diff": "feature correlations", "fpd": "FPD", "kpd": "KPD",
         "classifier_auc": "classifier AUC", "scan_response": "calibrated response",
         "scan_resolution": "calibrated width", "scan_hits": "hits",
         "scan_shower_max": "shower maximum"}


def auc_error(auc: float, n_ref: int, n_cand: int) -> float:
    """Standard error of a ROC AUC on ``n_ref`` + ``n_cand`` test events (Hanley & McNeil,
    Radiology 143 (1982) 29)."""
    a = min(max(auc, 1e-9), 1 - 1e-9)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n_cand - 1) * (q1 - a * a) + (n_ref - 1) * (q2 - a * a)) / (n_ref * n_cand)
    return math.sqrt(max(var, 0.0))


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else None


def _err(d: dict[str, Any], key: str) -> float:
    e = _num(d.get(f"{key}_error"))
    return e if e is not None and e > 0 else 0.0


def ratio_to_floor(value: float, floor: float, baseline: float = 0.0, err_value: float = 0.0,
                   err_floor: float = 0.0) -> float:
    """``(value - b) / max(|floor - b|, 2 err_value, 2 err_floor)`` (module doc); 0/0 -> 0."""
    noise = max(abs(floor - baseline), 2.0 * err_value, 2.0 * err_floor)
    excess = value - baseline
    if noise <= 0:
        return 0.0 if excess <= 0 else math.inf
    return excess / noise


def metric_rows(cand: dict[str, Any], floor: dict[str, Any] | None,
                n_events: tuple[int, int] | None = None) -> list[dict[str, Any]]:
    """One row per metric present in ``cand``: value, error, floor, ratio, far, counts.

    ``n_events`` (reference, candidate) gives the AUC its error when ``classifier_auc_error`` is
    missing (the classifier tests on 30 % of each sample)."""
    rows = []
    for key, label, base, counts, dist in METRICS:
        v = _num(cand.get(key))
        if key not in cand:
            continue
        fv = _num(floor.get(key)) if floor else None
        ev, ef = _err(cand, key), _err(floor or {}, key)
        if key == "classifier_auc" and n_events and v is not None:
            nr, nc = (max(2, round(0.3 * n)) for n in n_events)
            ev = ev or auc_error(v, nr, nc)
            ef = ef or (auc_error(fv, nr, nr) if fv is not None else 0.0)
        ratio = None
        if v is not None and fv is not None:
            ratio = ratio_to_floor(v, fv, base, ev, ef)
        far = ratio is not None and ratio > FAR_RATIO
        if key == "classifier_auc" and v is not None and v > FAR_AUC:
            far = True
        rows.append({"key": key, "label": label, "value": v, "error": ev or None, "floor": fv,
                     "floor_error": ef or None, "ratio": ratio, "far": far, "counts": counts,
                     "distribution_level": dist})
    return rows


def _fmt_ratio(r: float) -> str:
    if math.isinf(r):
        return "inf (floor 0)"
    return f"{r:,.0f}x" if abs(r) >= 100 else f"{r:.3g}x"


_TARGET_NAMES = {"response": "response", "resolution": "width", "hits": "hits",
                 "shower_max": "shower max"}


def _miss(row: dict[str, Any], q: str) -> str:
    d = row[f"d_{q}"]
    if d is None or not math.isfinite(d):
        val = "undefined"          # e.g. the width of a bin whose candidate showers are empty
    else:
        val = f"{d:+.2f} layers" if q == "shower_max" else f"{d:+.1%}"
    return f"{_TARGET_NAMES.get(q, q)} {val} at {row['energy']:g} GeV"


def _target_text(scan: dict[str, Any] | None, label: str = "candidate") -> str:
    if not scan or label not in scan.get("diffs", {}):
        return ""
    rows = [r for r in scan["diffs"][label] if "skipped" not in r]
    if not rows:
        return "; per-energy targets: no bin with enough events"
    ok = [r for r in rows if all(r[f"ok_{q}"] for q in scan["targets"])]
    s = f"; per-energy targets (issue 15) met in {len(ok)}/{len(rows)} energy bins"
    misses = [_miss(r, q) for r in rows for q in scan["targets"] if not r[f"ok_{q}"]]
    if misses:
        s += " (missed: " + ", ".join(misses[:4]) + (", ..." if len(misses) > 4 else "") + ")"
    fl = scan["diffs"].get("floor")
    if fl:
        frows = [r for r in fl if "skipped" not in r]
        fok = [r for r in frows if all(r[f"ok_{q}"] for q in scan["targets"])]
        s += f" (floor: {len(fok)}/{len(frows)})"
    return s


def verdict(cand: dict[str, Any], floor: dict[str, Any] | None, scan: dict[str, Any] | None = None,
            n_events: tuple[int, int] | None = None) -> dict[str, Any]:
    """``{"level", "line", "worst", "far", "rows"}`` for candidate metrics ``cand`` and floor
    metrics ``floor`` (the dicts of :func:`caloforge.physics.compare`, optionally with the
    ``scan_*`` keys); ``level`` is ``"incompatible"``, ``"resolved"``, ``"compatible"`` or
    ``"unknown"``."""
    rows = metric_rows(cand, floor, n_events)
    counted = [r for r in rows if r["counts"]]
    far = [r for r in counted if r["far"]]
    rated = [r for r in counted if r["ratio"] is not None]
    worst = max(rated, key=lambda r: r["ratio"]) if rated else None
    targets = _target_text(scan)

    def describe(r: dict[str, Any]) -> str:
        name = SHORT.get(r["key"], r["key"])
        if r["key"] == "classifier_auc":
            return f"{name} {r['value']:.3f}" + (f" ({_fmt_ratio(r['ratio'])})" if r["ratio"] is not None else "")
        return f"{name} {_fmt_ratio(r['ratio'])}" if r["ratio"] is not None else name

    worst_txt = (f"worst metric/floor ratio {_fmt_ratio(worst['ratio'])} "
                 f"({SHORT.get(worst['key'], worst['key'])})" if worst else "")
    if far:
        level = "incompatible"
        line = ("NOT compatible with the MC: " + (worst_txt + "; " if worst_txt else "")
                + "far above the floor (ratio > 3, or AUC > 0.75): "
                + ", ".join(describe(r) for r in far))
    elif floor is None or worst is None:
        level = "unknown"
        line = "no verdict: no MC floor was computed, so no metric can be read against the noise"
    elif worst["ratio"] <= COMPATIBLE_RATIO:
        level = "compatible"
        line = f"compatible with the MC at this sample size: {worst_txt}"
    else:
        level = "resolved"
        line = f"close to the MC but resolved from it: {worst_txt}"
    return {"level": level, "line": line + targets, "worst": worst["key"] if worst else None,
            "worst_ratio": worst["ratio"] if worst else None,
            "far": [r["key"] for r in far], "rows": rows}


__all__ = ["COMPATIBLE_RATIO", "FAR_AUC", "FAR_RATIO", "METRICS", "auc_error", "metric_rows",
           "ratio_to_floor", "verdict"]
