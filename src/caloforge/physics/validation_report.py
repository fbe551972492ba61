"""``report.md`` of ``caloforge validate``: the verdict, every metric next to its floor and their
ratio, the per-energy scan, the 3DGAN breakdown, the plots and the notes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from caloforge.physics.report import Report, fmt
from caloforge.physics.verdict import FAR_AUC, FAR_RATIO


def _pm(v: Any, err: Any) -> Any:
    if v is None or err is None or not isinstance(v, float) or not isinstance(err, float):
        return v
    return f"{fmt(v)} ± {fmt(err, 2)}"


def _metrics_table(rep: Report, result: dict[str, Any]) -> None:
    rows = result["verdict"]["rows"]
    has_floor = result.get("floor_vs_reference") is not None
    headers = ["metric", "candidate"] + (["floor (ref. vs indep. ref.)", "ratio to floor",
                                          "far above floor"] if has_floor else [])
    body = []
    for r in rows:
        row: list[Any] = [r["label"], _pm(r["value"], r["error"])]
        if has_floor:
            row += [_pm(r["floor"], r["floor_error"]), r["ratio"],
                    "**yes**" if r["far"] else ("no" if r["counts"] else "(sub-term)")]
        body.append(row)
    rep.table(headers, body)
    rep.text(f"\nratio = (value - b) / max(|floor - b|, 2 err(value), 2 err(floor)), b = 0.5 for "
             f"the AUC, 0 otherwise; far above the floor: ratio > {FAR_RATIO:g}, or AUC > "
             f"{FAR_AUC:g}. Lower is better for every metric (AUC 0.5 = indistinguishable).")


def _diff(value: float | None, err: float | None, spec: str, err_spec: str) -> str:
    """``value ± err``; "undefined" where the candidate has no value (e.g. the resolution of a
    bin whose showers are all empty)."""
    if value is None:
        return "undefined"
    return f"{value:{spec}}" + ("" if err is None else f" ± {err:{err_spec}}")


def _scan_tables(rep: Report, result: dict[str, Any]) -> None:
    scan = result.get("energy_scan")
    if not scan:
        return
    rep.heading("Per energy: calibrated response and resolution, hits, shower maximum")
    rep.text(f"\nCalibrated energy = sum over layers of E_layer / f_layer "
             f"({'detector sampling fractions' if scan['calibrated'] else 'raw sum: no detector'})"
             f"; hits: cells above {result['scan_hit_threshold_gev']:g} GeV; shower maximum: "
             "layer of the maximum of each event's longitudinal profile (mean). Bins with "
             f"fewer than {scan['min_events']} events are skipped.")
    bins = scan["bins"]
    labels = list(bins)
    rows = []
    for i, c in enumerate(scan["centres"]):
        row: list[Any] = [c, " / ".join(str(bins[k][i]["n"]) for k in labels)]
        for q in ("response", "resolution", "hits", "shower_max"):
            row.append(" / ".join(fmt(bins[k][i].get(q)) for k in labels))
        rows.append(row)
    rep.table(["E [GeV]", f"n ({' / '.join(labels)})", "response E_cal/E", "resolution σ/mean",
               "hits", "shower-max layer"], rows)
    t = scan["targets"]
    for label, diffs in scan["diffs"].items():
        rep.text(f"\n**{label} vs reference** (targets: response within {t['response']:.0%}, "
                 f"width within {t['resolution']:.0%}, hits within {t['hits']:.0%}, shower max "
                 f"within {t['shower_max']:g} layer; ✗ = missed)")
        body = []
        for d in diffs:
            if "skipped" in d:
                body.append([d["energy"], d["skipped"], None, None, None])
                continue
            mark = {q: "" if d[f"ok_{q}"] else " ✗" for q in t}
            body.append([d["energy"],
                         _diff(d["d_response"], d["d_response_err"], "+.2%", ".2%") + mark["response"],
                         _diff(d["d_resolution"], d["d_resolution_err"], "+.1%", ".0%")
                         + mark["resolution"],
                         _diff(d["d_hits"], d["d_hits_err"], "+.1%", ".1%") + mark["hits"],
                         _diff(d["d_shower_max"], d["d_shower_max_err"], "+.2f", ".2f")
                         + mark["shower_max"]])
        rep.table(["E [GeV]", "Δ response", "Δ width", "Δ hits", "Δ shower max [layers]"], body)


def _classifier_groups(rep: Report, cand: dict[str, Any], floor: dict[str, Any] | None) -> None:
    groups = cand.get("classifier_auc_groups")
    if not groups:
        return
    rep.heading("Classifier AUC per feature group")
    rep.text("\nThe same trees on one group of high-level features (with ln E) at a time: what "
             "tells the samples apart. Many per-layer features that each separate a little add "
             "up in the all-feature AUC.")
    fg = (floor or {}).get("classifier_auc_groups") or {}
    rep.table(["group", "features", "candidate"] + (["floor"] if fg else []),
              [[k, v["features"], _pm(v["auc"], v["error"])]
               + ([_pm(fg[k]["auc"], fg[k]["error"]) if k in fg else None] if fg else [])
               for k, v in groups.items()])


def _correlations(rep: Report, cand: dict[str, Any], floor: dict[str, Any] | None) -> None:
    detail = cand.get("corr_detail") or {}
    bands = detail.get("bands")
    if not bands:
        return
    rep.heading("How the features move together: rank correlations per energy band")
    rep.text("\nSpearman correlations of the scalar features' residuals about their trend in "
             "ln E, reference vs candidate; the pairs that differ most in each band (a sample "
             "can have every feature's distribution right and still fluctuate differently).")
    body = []
    for b in bands:
        lo, hi = b["energy_gev"]
        for r in b["largest"][:3]:
            body.append([f"{lo:.3g}-{hi:.3g}", r["pair"], r["reference"], r["candidate"],
                         _pm(r["diff"], r["error"])])
    rep.table(["E [GeV]", "pair", "reference", "candidate", "difference"], body)
    if floor and floor.get("corr_mean_diff") is not None:
        rep.text(f"\nMean |difference| over all pairs and bands: candidate "
                 f"{fmt(cand['corr_mean_diff'])}, floor {fmt(floor['corr_mean_diff'])}.")


def write_report(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """The one-page validation report (markdown tables + embedded plots)."""
    cand = result["candidate_vs_reference"]
    floor = result.get("floor_vs_reference")
    rep = Report("Shower validation")
    n = result["n_events"]
    if result.get("verdict"):
        rep.text(f"\n**Verdict: {result['verdict']['line']}.**")
    rep.text(f"\nReference `{result['reference']}` ({n['reference']} events), candidate "
             f"`{result['candidate']}` ({n['candidate']} events)"
             + (f", floor: {result['floor']} ({n['floor']} events, an independent reference "
                "sample: its distance to the reference is the statistical noise)." if floor
                else ", no floor."))
    if "verdict" in result:
        _metrics_table(rep, result)
    _scan_tables(rep, result)
    br = cand.get("shape_breakdown")
    if br:
        rep.heading("3DGAN metric per energy bin")
        rep.table(["bin [GeV]", "n ref", "n cand", "P_b", "Q_b", "note"],
                  [[b["bin"], b["n_ref"], b["n_cand"], b.get("P"), b.get("Q"), b["note"]]
                   for b in br["bins"]])
    _classifier_groups(rep, cand, floor)
    _correlations(rep, cand, floor)
    groups = cand.get("sep_power_groups", {})
    if groups:
        rep.heading("Separation power per feature (per-layer features averaged over layers)")
        fg = floor.get("sep_power_groups", {}) if floor else {}
        rep.table(["feature", "candidate"] + (["floor"] if floor else []),
                  [[k, v] + ([fg.get(k)] if floor else []) for k, v in groups.items()])
    if result.get("plots"):
        rep.heading("Plots")
        captions = {"longitudinal": "Longitudinal profile", "transverse": "Transverse profiles",
                    "response": "E_vis / E_primary vs E_primary", "moments": "Shower moments",
                    "spectrum": "Cell-energy spectrum", "hits": "Hit multiplicity and response",
                    "correlations": "Feature correlations per energy band: candidate minus "
                                    "reference (below the diagonal), floor minus reference "
                                    "(above)",
                    "energy_scan": "Calibrated response, resolution, hits and shower maximum "
                                   "per energy"}
        for k, fname in result["plots"].items():
            rep.image(fname, captions.get(k, k))
    notes = (result.get("notes", []) + cand.get("notes", [])
             + ([f"floor: {x}" for x in floor.get("notes", [])] if floor else []))
    if notes:
        rep.heading("Notes")
        rep.text("\n".join(f"- {x}" for x in notes))
    return rep.write(path)


__all__ = ["write_report"]
