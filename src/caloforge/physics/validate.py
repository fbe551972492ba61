"""Compare a candidate shower sample with a reference: every metric, plots, a one-page report.

:func:`compare` works on in-memory :class:`FeatureTable` objects; :func:`validate` streams HDF5
files (any size: only ~1.5 kB of features per event are kept), runs :func:`compare` and the
per-energy scan (:mod:`caloforge.physics.energy_scan`) for the candidate and for the *floor*
(an independent second MC sample vs the reference: the statistical noise at this sample size,
given as a file or simulated here, see :func:`validate`), then the verdict
(:mod:`caloforge.physics.verdict`), and writes ``metrics.json``, PNG plots and ``report.md``.
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
from caloforge.physics.correlations import correlation_difference
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
    SCAN_HIT_THRESHOLD_GEV,
    FeatureTable,
    LogHistogram,
    features_from_chunks,
    features_from_file,
)
from caloforge.physics.shape_metric import ShapeMetric
from caloforge.physics.validation_report import write_report
from caloforge.physics.verdict import METRICS, auc_error

#: Headline metrics shown in the report table, (key in the result, label).
HEADLINE = tuple((key, label) for key, label, *_ in METRICS)


def _group_means(sp: dict[str, float]) -> dict[str, float]:
    groups: dict[str, list[float]] = {}
    for name, v in sp.items():
        tag = name.rsplit("_", 1)[0] if name[-2:].isdigit() else name
        groups.setdefault(tag, []).append(v)
    return {k: float(np.mean(v)) for k, v in groups.items()}


#: Feature groups of the per-group classifier test, by name prefix of
#: :meth:`FeatureTable.high_level`'s columns (the per-layer features; the rest are "scalars").
CLASSIFIER_GROUPS = {"layer fractions": ("f_layer_",), "centroids": ("ec_x_", "ec_y_"),
                     "widths": ("width_x_", "width_y_")}


def feature_groups(names: list[str]) -> dict[str, list[int]]:
    """Column indices of each classifier group (:data:`CLASSIFIER_GROUPS`, then the scalars:
    moments, shower maxima, response, hits, sparsity)."""
    out: dict[str, list[int]] = {"scalars": []}
    for i, name in enumerate(names):
        group = next((g for g, prefixes in CLASSIFIER_GROUPS.items()
                      if name.startswith(prefixes)), "scalars")
        out.setdefault(group, []).append(i)
    return {g: idx for g, idx in out.items() if idx}


def _classifier(out: dict[str, Any], xr: np.ndarray, xc: np.ndarray, names: list[str],
                er: np.ndarray, ec: np.ndarray, seed: int) -> float:
    """The classifier test on all high-level features and on each feature group alone (each
    with the condition ``ln E``): what tells the samples apart, not only how well. Why: 25
    per-layer widths that each separate at AUC 0.50-0.56 added up to 0.80 in the shipped
    default, which no single feature's separation power shows. Returns the seconds the
    groups took."""
    c = classifier_auc(np.hstack([xr, er]), np.hstack([xc, ec]), seed=seed)
    out["classifier_auc"], out["classifier_detail"] = c["auc"], c
    out["classifier_auc_error"] = auc_error(c["auc"], c["n_test_ref"], c["n_test_cand"])
    t0 = time.perf_counter()
    groups = {}
    for group, idx in feature_groups(names).items():
        g = classifier_auc(np.hstack([xr[:, idx], er]), np.hstack([xc[:, idx], ec]), seed=seed)
        groups[group] = {"auc": g["auc"], "error": auc_error(g["auc"], g["n_test_ref"],
                                                             g["n_test_cand"]),
                         "features": len(idx)}
    out["classifier_auc_groups"] = groups
    return time.perf_counter() - t0


def compare(reference: FeatureTable, candidate: FeatureTable,
            ref_spectrum: LogHistogram | None = None, cand_spectrum: LogHistogram | None = None,
            seed: int = 0, classifier: bool = True, shape_metric: ShapeMetric | None = None,
            ) -> dict[str, Any]:
    """All metrics of ``candidate`` against ``reference`` (two feature tables of the same grid).

    Returns a JSON-ready dict: headline values (``shape_metric``, ``sep_power_mean``,
    ``corr_mean_diff`` (:mod:`caloforge.physics.correlations`), ``fpd``, ``kpd``,
    ``classifier_auc``, ...), the 3DGAN breakdown, per-feature separation powers, FPD /
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
    out.update(correlation_difference(reference, candidate))
    if out["corr_mean_diff"] is None:
        notes.append(out["corr_detail"]["note"])
    timing["correlations"] = time.perf_counter() - t0

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
            timing["classifier_groups"] = _classifier(
                out, xr, xc, names, np.log(reference["e_primary"])[:, None],
                np.log(candidate["e_primary"])[:, None], seed)
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


def _inspect(paths: dict[str, str | os.PathLike[str]]) -> tuple[tuple[int, ...], dict[str, dict]]:
    """The common grid of every file (or a UserError) and each file's attributes."""
    from caloforge.data import open_showers

    grids, attrs = {}, {}
    for label, p in paths.items():
        with open_showers(p) as f:
            grids[label] = (Path(p), f.grid)
            attrs[label] = dict(getattr(f, "attrs", {}) or {})
    ref_path, ref_grid = grids["reference"]
    if len(ref_grid) != 3:
        raise UserError(f"{ref_path}: grid {ref_grid} is not three-dimensional")
    for _label, (p, g) in grids.items():
        if g != ref_grid:
            raise UserError(f"{p}: grid {g} does not match the reference {ref_path} grid {ref_grid}")
    return ref_grid, attrs


def _detector(ref_attrs: dict, grid: tuple[int, ...]) -> tuple[Any, str | None]:
    """The reference's detector (its ``detector`` attribute), else the CLIC ECAL for its grid."""
    from caloforge.detector import Calorimeter, clic_ecal

    d = ref_attrs.get("detector")
    if isinstance(d, dict):
        try:
            det = Calorimeter.from_dict(d)
        except (KeyError, TypeError, ValueError):
            det = None
        if det is not None and det.grid == tuple(grid):
            return det, None
    clic = clic_ecal()
    if clic.grid == tuple(grid):
        return clic, ("energy scan: the reference file has no detector description; the CLIC ECAL "
                      "sampling fractions (17 front + 8 back layers) are assumed")
    return None, ("energy scan: no detector description and not the CLIC grid, so the "
                  "'calibrated' energy is the raw visible sum")


def _number(v: Any) -> float | None:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
    return float(v) if ok else None


def _is_mc(attrs: dict) -> bool:
    from caloforge.mc import GENERATOR

    # a single file (``generator``) or a sharded caloforge production of the MC (``producer``)
    prod = attrs.get("producer")
    return attrs.get("generator") == GENERATOR or (
        isinstance(prod, dict) and prod.get("kind") == "mc" and not prod.get("options"))


def floor_seed(ref_attrs: dict, cand_attrs: dict) -> int:
    """Seed of a simulated floor: the reference's seed + 1, skipping the candidate's MC seed."""
    used = {s for s in (ref_attrs.get("seed"), cand_attrs.get("seed") if _is_mc(cand_attrs) else None)
            if isinstance(s, int) and not isinstance(s, bool)}
    s = (ref_attrs.get("seed") if isinstance(ref_attrs.get("seed"), int) else 0) + 1
    while s in used:
        s += 1
    return int(s)


def _mc_chunks(reference_path: str | os.PathLike[str], max_events: int | None, chunk_size: int,
               seed: int, detector: Any, progress: bool):
    """Showers of the caloforge MC at the reference's energies (same order), chunk by chunk."""
    from caloforge.data import open_showers
    from caloforge.mc import simulate

    with open_showers(reference_path) as f:
        e = f.energies()
    e = e[:max_events] if max_events is not None else e
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(e), unit="ev", desc="floor (MC)", leave=False, dynamic_ncols=True)
    for lo in range(0, len(e), chunk_size):
        img, en = simulate(e[lo:lo + chunk_size], seed=seed, detector=detector, first_event=lo)
        if bar is not None:
            bar.update(len(en))
        yield img, en
    if bar is not None:
        bar.close()


def validate(reference_path: str | os.PathLike[str], candidate_path: str | os.PathLike[str],
             output_dir: str | os.PathLike[str], floor_path: str | os.PathLike[str] | None = None,
             max_events: int | None = None, chunk_size: int = 1000,
             hit_threshold: float = HIT_THRESHOLD_GEV, seed: int = 0, classifier: bool = True,
             plots: bool = True, progress: bool = False, simulate_floor: bool = True,
             floor_seed: int | None = None, raw_cells: bool = False) -> dict[str, Any]:
    """Validate a candidate file against a reference file; write metrics.json, plots, report.md.

    The floor (MC-vs-MC noise at this sample size): ``floor_path``, a second reference sample
    independent of the first (e.g. MC with another seed, or another Geant4 sample); if it is not
    given, ``simulate_floor`` and the reference is a caloforge MC file, the floor is simulated
    here: the caloforge MC of the reference's detector at the reference's energies (same events,
    same order) with seed ``floor_seed`` (default: the reference's seed + 1, skipping the
    candidate's MC seed). A non-MC reference without ``floor_path`` gets no floor (a note says
    so). ``max_events`` limits each file to its first N events. A candidate that declares a cell
    threshold (``cell_threshold_gev``: below it a generator writes exact zeros) is compared
    with every sample's cells below that threshold set to zero, as a readout would (a note says
    so; the MC keeps sub-threshold energies down to 1e-27 GeV, 0.7% of its non-zero cells,
    which no thresholded candidate can have); ``raw_cells`` compares the files as they are. Returns the metrics dict (also
    written to ``output_dir/metrics.json``), with ``verdict`` and ``energy_scan``.
    """
    paths: dict[str, str | os.PathLike[str]] = {"reference": reference_path, "candidate": candidate_path}
    if floor_path is not None:
        paths["floor"] = floor_path
    if not (math.isfinite(hit_threshold) and hit_threshold >= 0):
        raise UserError(f"--hit-threshold {hit_threshold!r}: must be a finite cell energy >= 0 GeV")
    if floor_seed is not None and (isinstance(floor_seed, bool) or not isinstance(floor_seed, int)
                                   or floor_seed < 0):
        raise UserError(f"floor_seed: expected a non-negative integer, got {floor_seed!r}")
    grid, attrs = _inspect(paths)
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    created = [d for d in (out, *out.parents) if not d.exists()]  # deepest first
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out}: cannot create output directory ({exc.strerror})") from None
    opts = {"max_events": max_events, "chunk_size": chunk_size, "hit_threshold": hit_threshold,
            "seed": seed, "classifier": classifier, "plots": plots, "progress": progress,
            "simulate_floor": simulate_floor, "floor_seed": floor_seed, "raw_cells": raw_cells}
    try:
        return _validate_into(out, paths, grid, attrs, opts)
    except BaseException:
        # no partial output: remove the folders this call created, if nothing was written there
        for d in created:
            try:
                d.rmdir()
            except OSError:
                break
        raise


def _tables(paths: dict[str, str | os.PathLike[str]], attrs: dict[str, dict], detector: Any,
            opts: dict[str, Any], scan_thr: float, notes: list[str]
            ) -> tuple[dict[str, FeatureTable], dict[str, LogHistogram], dict[str, Any] | None]:
    """Feature tables and cell spectra of every sample, the floor simulated if need be."""
    tables: dict[str, FeatureTable] = {}
    spectra: dict[str, LogHistogram] = {}
    for label, p in paths.items():
        spectra[label] = LogHistogram()
        tables[label] = features_from_file(p, opts["max_events"], opts["chunk_size"],
                                           opts["hit_threshold"], spectrum=spectra[label],
                                           progress=opts["progress"], scan_threshold=scan_thr,
                                           cell_threshold=opts["cell_threshold"])
    source: dict[str, Any] | None = {"kind": "file", "path": str(paths["floor"])} if "floor" in paths else None
    if source is None and opts["simulate_floor"]:
        if _is_mc(attrs["reference"]) and detector is not None:
            s = opts["floor_seed"] if opts["floor_seed"] is not None else floor_seed(
                attrs["reference"], attrs["candidate"])
            spectra["floor"] = LogHistogram()
            tables["floor"] = features_from_chunks(
                _mc_chunks(paths["reference"], opts["max_events"], opts["chunk_size"], s, detector,
                           opts["progress"]), opts["hit_threshold"], spectra["floor"], scan_thr,
                opts["cell_threshold"])
            source = {"kind": "simulated", "seed": s, "detector": detector.name,
                      "path": f"caloforge MC, seed {s}, at the reference's energies"}
        else:
            notes.append("no floor: the reference is not a caloforge MC file (a caloforge MC "
                         "sample would differ from it by more than noise); give --floor")
    return tables, spectra, source


def _validate_into(out: Path, paths: dict[str, str | os.PathLike[str]], grid: tuple[int, ...],
                   attrs: dict[str, dict], opts: dict[str, Any]) -> dict[str, Any]:
    from caloforge.physics.energy_scan import QUANTITIES, energy_scan

    t_start = time.perf_counter()
    notes: list[str] = []
    detector, note = _detector(attrs["reference"], grid)
    if note:
        notes.append(note)
    cell_thr = _number(attrs["candidate"].get("cell_threshold_gev"))
    scan_thr = max(SCAN_HIT_THRESHOLD_GEV, cell_thr or 0.0)
    if scan_thr > SCAN_HIT_THRESHOLD_GEV:
        notes.append(f"hits of the energy scan counted above the candidate's cell threshold "
                     f"{scan_thr:g} GeV (cell_threshold_gev) instead of 1e-05 GeV, in every sample")
    opts = {**opts, "cell_threshold": 0.0 if opts["raw_cells"] else (cell_thr or 0.0)}
    if opts["cell_threshold"] > 0:
        notes.append(f"cells below the candidate's cell threshold {opts['cell_threshold']:g} GeV "
                     "(cell_threshold_gev) set to 0 in every sample before all metrics, as a "
                     "readout would (--raw-cells: the files as they are)")
    tables, spectra, source = _tables(paths, attrs, detector, opts, scan_thr, notes)
    t_feat = time.perf_counter() - t_start
    sm = ShapeMetric(tables["reference"])
    seed, classifier = opts["seed"], opts["classifier"]
    result: dict[str, Any] = {
        "reference": str(paths["reference"]), "candidate": str(paths["candidate"]),
        "floor": None if source is None else source["path"], "floor_source": source,
        "grid": list(grid), "max_events": opts["max_events"],
        "hit_threshold_gev": opts["hit_threshold"], "scan_hit_threshold_gev": scan_thr,
        "candidate_cell_threshold_gev": cell_thr,
        "cell_threshold_applied_gev": opts["cell_threshold"] or None, "seed": seed,
        "n_events": {k: len(t) for k, t in tables.items()}, "notes": notes,
    }
    for label in ("candidate", "floor"):
        if label in tables:
            result[f"{label}_vs_reference"] = compare(
                tables["reference"], tables[label], spectra["reference"], spectra[label], seed,
                classifier, shape_metric=sm)
    f = None if detector is None else np.asarray(detector.layer_sampling_fraction)
    scan = energy_scan(tables, f)
    for label, w in scan["worst"].items():
        res = result[f"{label}_vs_reference"]
        for q in QUANTITIES:
            res[f"scan_{q}"] = None if w[q] is None else w[q]["value"]
            res[f"scan_{q}_error"] = None if w[q] is None else w[q]["error"]
            res[f"scan_{q}_energy"] = None if w[q] is None else w[q]["energy"]
    result["energy_scan"] = scan
    from caloforge.physics.verdict import verdict

    n = result["n_events"]
    result["verdict"] = verdict(result["candidate_vs_reference"], result.get("floor_vs_reference"),
                                scan, (n["reference"], n["candidate"]))
    if opts["plots"]:
        from caloforge.physics.plots import plot_all  # matplotlib only when plotting

        pl = plot_all(tables, spectra, out, scan)
        result["plots"] = {k: str(Path(v).name) for k, v in pl.items()}
    result["timing_s"] = {"features": t_feat, "total": time.perf_counter() - t_start}
    result = _finite(result)
    write_json(out / "metrics.json", result)
    write_report(result, out / "report.md")
    return result


__all__ = ["CLASSIFIER_GROUPS", "compare", "feature_groups", "floor_seed", "validate",
           "write_report"]
