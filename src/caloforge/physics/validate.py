"""Compare a candidate shower sample with a reference: every metric, plots, a one-page report.

:func:`compare` works on in-memory :class:`FeatureTable` objects; :func:`validate` streams HDF5
files (any size: only ~1.5 kB of features per event are kept), runs :func:`compare` for the
candidate and, if a second independent reference (``floor``) is given, for reference vs floor
(the MC-vs-MC statistical noise), then writes ``metrics.json``, PNG plots and ``report.md``.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from caloforge.atomic import write_json
from caloforge.errors import UserError
from caloforge.physics.distances import (
    classifier_auc,
    fpd,
    kpd,
    separation_power_hist,
    separation_powers,
    standardise,
)
from caloforge.physics.observables import (
    HIT_THRESHOLD_GEV,
    FeatureTable,
    LogHistogram,
    features_from_file,
)
from caloforge.physics.report import Report
from caloforge.physics.shape_metric import ShapeMetric

#: Headline metrics shown in the report table, (key in the result, label).
HEADLINE = (
    ("shape_metric", "3DGAN shape metric (P + Q)"),
    ("shape_moment_term", "  moment term mean P_b"),
    ("shape_profile_term", "  profile term mean Q_b"),
    ("sep_power_mean", "mean separation power (high-level features)"),
    ("sep_power_spectrum", "separation power, cell-energy spectrum"),
    ("fpd", "FPD (N -> inf)"),
    ("kpd", "KPD"),
    ("classifier_auc", "classifier ROC AUC"),
)


def _group_means(sp: dict[str, float]) -> dict[str, float]:
    groups: dict[str, list[float]] = {}
    for name, v in sp.items():
        tag = name.rsplit("_", 1)[0] if name[-2:].isdigit() else name
        groups.setdefault(tag, []).append(v)
    return {k: float(np.mean(v)) for k, v in groups.items()}


def compare(reference: FeatureTable, candidate: FeatureTable,
            ref_spectrum: LogHistogram | None = None, cand_spectrum: LogHistogram | None = None,
            seed: int = 0, classifier: bool = True, shape_metric: ShapeMetric | None = None,
            ) -> dict[str, Any]:
    """All metrics of ``candidate`` against ``reference`` (two feature tables of the same grid).

    Returns a JSON-ready dict: headline values (``shape_metric``, ``sep_power_mean``, ``fpd``,
    ``kpd``, ``classifier_auc``, ...), the 3DGAN breakdown, per-feature separation powers, FPD /
    KPD errors, timings, and ``notes`` for anything skipped. Never NaN (``None`` when a metric
    cannot be computed, with a note).
    """
    if reference.grid != candidate.grid:
        raise UserError(f"grids differ: reference {reference.grid}, candidate {candidate.grid}")
    notes: list[str] = []
    out: dict[str, Any] = {"n_reference": len(reference), "n_candidate": len(candidate)}
    timing: dict[str, float] = {}

    t0 = time.perf_counter()
    sm = shape_metric or ShapeMetric(reference)
    try:
        br = sm.breakdown(candidate)
        out["shape_metric"] = br["metric"]
        out["shape_moment_term"] = br["moment_term"]
        out["shape_profile_term"] = br["profile_term"]
        out["shape_breakdown"] = br
        notes += [f"3DGAN bin {r['bin']}: skipped, {r['note']}" for r in br["bins"] if r["skipped"]]
    except UserError as exc:
        out["shape_metric"] = None
        notes.append(str(exc))
    timing["shape_metric"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    xr, names = reference.high_level()
    xc, _ = candidate.high_level()
    sp = separation_powers(xr, xc, names)
    out["sep_power"] = sp
    out["sep_power_groups"] = _group_means(sp)
    out["sep_power_mean"] = float(np.mean(list(sp.values())))
    if ref_spectrum is not None and cand_spectrum is not None:
        out["sep_power_spectrum"] = separation_power_hist(ref_spectrum.counts, cand_spectrum.counts)
    timing["separation_power"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    (xs_r, xs_c), keep = standardise(xr, xc, method="quantile")
    timing["standardise"] = time.perf_counter() - t0
    out["n_features"] = int(keep.sum())
    dropped = [n for n, k in zip(names, keep, strict=True) if not k]
    if dropped:
        notes.append(f"FPD/KPD: {len(dropped)} features constant in the reference dropped "
                     f"({', '.join(dropped[:5])}{'...' if len(dropped) > 5 else ''})")
    from threadpoolctl import threadpool_limits

    # one BLAS thread: small matrices, and spinning threads are slow on a shared machine
    with threadpool_limits(limits=1):
        for name, distance in (("fpd", fpd), ("kpd", kpd)):
            t0 = time.perf_counter()
            try:
                d = distance(xs_r, xs_c, seed=seed)
                out[name], out[f"{name}_error"], out[f"{name}_detail"] = d["value"], d["error"], d
            except UserError as exc:
                out[name] = None
                notes.append(str(exc))
            timing[name] = time.perf_counter() - t0
    if classifier:
        t0 = time.perf_counter()
        try:
            # the condition (log primary energy) is an input: the test is conditional
            er = np.log(reference["e_primary"])[:, None]
            ec = np.log(candidate["e_primary"])[:, None]
            c = classifier_auc(np.hstack([xr, er]), np.hstack([xc, ec]), seed=seed)
            out["classifier_auc"], out["classifier_detail"] = c["auc"], c
        except UserError as exc:
            out["classifier_auc"] = None
            notes.append(str(exc))
        timing["classifier"] = time.perf_counter() - t0
    out["timing_s"] = timing
    out["notes"] = notes
    return _finite(out)


def _finite(obj: Any) -> Any:
    """Replace any non-finite float by None (JSON has no NaN; the report shows a dash)."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _check_grids(paths: dict[str, str | os.PathLike[str]]) -> tuple[int, ...]:
    from caloforge.data import open_showers

    grids = {}
    for label, p in paths.items():
        with open_showers(p) as f:
            grids[label] = (Path(p), f.grid)
    ref_path, ref_grid = grids["reference"]
    if len(ref_grid) != 3:
        raise UserError(f"{ref_path}: grid {ref_grid} is not three-dimensional")
    for _label, (p, g) in grids.items():
        if g != ref_grid:
            raise UserError(f"{p}: grid {g} does not match the reference {ref_path} grid {ref_grid}")
    return ref_grid


def validate(reference_path: str | os.PathLike[str], candidate_path: str | os.PathLike[str],
             output_dir: str | os.PathLike[str], floor_path: str | os.PathLike[str] | None = None,
             max_events: int | None = None, chunk_size: int = 1000,
             hit_threshold: float = HIT_THRESHOLD_GEV, seed: int = 0, classifier: bool = True,
             plots: bool = True, progress: bool = False) -> dict[str, Any]:
    """Validate a candidate file against a reference file; write metrics.json, plots, report.md.

    ``floor_path``: a second reference sample, independent of the first (e.g. MC with another
    seed); its metrics against the reference are the statistical floor shown next to the
    candidate's. ``max_events`` limits each file to its first N events. Returns the metrics dict
    (also written to ``output_dir/metrics.json``).
    """
    paths: dict[str, str | os.PathLike[str]] = {"reference": reference_path, "candidate": candidate_path}
    if floor_path is not None:
        paths["floor"] = floor_path
    if not (math.isfinite(hit_threshold) and hit_threshold >= 0):
        raise UserError(f"--hit-threshold {hit_threshold!r}: must be a finite cell energy >= 0 GeV")
    grid = _check_grids(paths)
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    created = [d for d in (out, *out.parents) if not d.exists()]  # deepest first
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out}: cannot create output directory ({exc.strerror})") from None
    try:
        return _validate_into(out, paths, grid, max_events, chunk_size, hit_threshold, seed,
                              classifier, plots, progress)
    except BaseException:
        # no partial output: remove the folders this call created, if nothing was written there
        for d in created:
            try:
                d.rmdir()
            except OSError:
                break
        raise


def _validate_into(out: Path, paths: dict[str, str | os.PathLike[str]], grid: tuple[int, ...],
                   max_events: int | None, chunk_size: int, hit_threshold: float, seed: int,
                   classifier: bool, plots: bool, progress: bool) -> dict[str, Any]:
    reference_path, candidate_path = paths["reference"], paths["candidate"]
    floor_path = paths.get("floor")
    t_start = time.perf_counter()
    tables: dict[str, FeatureTable] = {}
    spectra: dict[str, LogHistogram] = {}
    for label, p in paths.items():
        spectra[label] = LogHistogram()
        tables[label] = features_from_file(p, max_events, chunk_size, hit_threshold,
                                           spectrum=spectra[label], progress=progress)
    t_feat = time.perf_counter() - t_start

    sm = ShapeMetric(tables["reference"])
    result: dict[str, Any] = {
        "reference": str(reference_path), "candidate": str(candidate_path),
        "floor": None if floor_path is None else str(floor_path),
        "grid": list(grid), "max_events": max_events, "hit_threshold_gev": hit_threshold,
        "seed": seed,
        "n_events": {k: len(t) for k, t in tables.items()},
    }
    result["candidate_vs_reference"] = compare(tables["reference"], tables["candidate"],
                                               spectra["reference"], spectra["candidate"], seed,
                                               classifier, shape_metric=sm)
    if "floor" in tables:
        result["floor_vs_reference"] = compare(tables["reference"], tables["floor"],
                                               spectra["reference"], spectra["floor"], seed,
                                               classifier, shape_metric=sm)
    result["timing_s"] = {"features": t_feat, "total": time.perf_counter() - t_start}
    if plots:
        from caloforge.physics.plots import plot_all  # matplotlib only when plotting

        pl = plot_all(tables, spectra, out)
        result["plots"] = {k: str(Path(v).name) for k, v in pl.items()}
    write_json(out / "metrics.json", result)
    write_report(result, out / "report.md")
    return result


def write_report(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """The one-page validation report (markdown table + embedded plots)."""
    cand = result["candidate_vs_reference"]
    floor = result.get("floor_vs_reference")
    rep = Report("Shower validation")
    n = result["n_events"]
    rep.text(f"\nReference `{result['reference']}` ({n['reference']} events), candidate "
             f"`{result['candidate']}` ({n['candidate']} events)"
             + (f", floor `{result['floor']}` ({n['floor']} events, an independent reference "
                "sample: its distance to the reference is the statistical noise)." if floor else ".")
             + " Lower is better for every metric except the AUC (0.5 = indistinguishable).")
    headers = ["metric", "candidate"] + (["floor (ref. vs ref.)", "candidate / floor"] if floor else [])
    rows = []
    for key, label in HEADLINE:
        if key not in cand:
            continue
        v = cand.get(key)
        err = cand.get(f"{key}_error")
        cell = v if err is None or v is None else f"{v:.4g} ± {err:.2g}"
        row: list[Any] = [label, cell]
        if floor:
            fv = floor.get(key)
            ferr = floor.get(f"{key}_error")
            row.append(fv if ferr is None or fv is None else f"{fv:.4g} ± {ferr:.2g}")
            ratio = None
            if key != "classifier_auc" and isinstance(v, float) and isinstance(fv, float) and fv > 0:
                ratio = v / fv
            row.append(ratio)
        rows.append(row)
    rep.table(headers, rows)
    br = cand.get("shape_breakdown")
    if br:
        rep.heading("3DGAN metric per energy bin")
        rep.table(["bin [GeV]", "n ref", "n cand", "P_b", "Q_b", "note"],
                  [[b["bin"], b["n_ref"], b["n_cand"], b.get("P"), b.get("Q"), b["note"]]
                   for b in br["bins"]])
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
                    "spectrum": "Cell-energy spectrum", "hits": "Hit multiplicity and response"}
        for k, fname in result["plots"].items():
            rep.image(fname, captions.get(k, k))
    notes = cand.get("notes", []) + ([f"floor: {x}" for x in floor.get("notes", [])] if floor else [])
    if notes:
        rep.heading("Notes")
        rep.text("\n".join(f"- {x}" for x in notes))
    return rep.write(path)


__all__ = ["compare", "validate", "write_report"]
