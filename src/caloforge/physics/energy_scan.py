"""Per-energy physics a calorimetrist looks at first: calibrated response and resolution, hits,
shower maximum -- for each sample, per primary-energy bin, and as differences to the reference.

* **Layer-calibrated energy** of an event: ``E_cal = sum_l E_l / f_l``, ``E_l`` the visible
  energy of layer ``l`` and ``f_l`` the detector's sampling fraction of that layer
  (:attr:`caloforge.detector.Calorimeter.layer_sampling_fraction`; CLIC ECAL: the 8 back layers
  sample 1/1.97 of the 17 front ones). ``E_cal`` estimates the energy deposited in the
  calorimeter, so ``E_cal / E_primary`` is ~0.98 (leakage) and its spread is the energy
  resolution a physicist reconstructs (the raw sum's width is dominated by energy moving between
  the two sections).
* **response** = mean(E_cal / E_primary) in a bin; **resolution** = std / mean of the same ratio
  (plain RMS, no core fit: a generator's tails count);
* **hits** = mean number of cells above ``threshold`` (default 10 keV, ``n_hits_scan``);
* **shower maximum** = mean over events of the layer index of the maximum of the event's visible
  longitudinal profile (``max_z``; the visible profile is ~dE/dt because the back layers are twice
  as thick and sample half as much).

Bins (:func:`energy_bins`): the distinct primary energies when the reference has at most
:data:`MAX_DISCRETE` of them, otherwise the 1-2-5-like centres :data:`SCAN_CENTRES` that hold
events; edges at the geometric midpoints between neighbouring centres. A bin with fewer than
``min_events`` events in the reference or the compared sample is reported as skipped.

Differences to the reference per bin (``d_response`` and ``d_resolution``, ``d_hits`` relative;
``d_shower_max`` in layers), each with its statistical error, and the issue-15 targets
:data:`TARGETS`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from caloforge.errors import UserError
from caloforge.physics.observables import SCAN_HIT_THRESHOLD_GEV, FeatureTable

#: Bin centres (GeV) used when the energies are continuous.
SCAN_CENTRES = (2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 400.0, 1000.0)
#: At most this many distinct reference energies are used as bins as they are.
MAX_DISCRETE = 32
#: Minimum events per bin in each of the two compared samples.
MIN_EVENTS = 20
#: Issue-15 targets: |relative difference| for response, resolution and hits, layers for the
#: shower maximum.
TARGETS = {"response": 0.02, "resolution": 0.25, "hits": 0.15, "shower_max": 1.0}
QUANTITIES = ("response", "resolution", "hits", "shower_max")


def energy_bins(energies: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(centres, edges)`` (GeV) for the primary energies of the reference, see module doc."""
    e = np.asarray(energies, dtype=np.float64)
    if e.size == 0:
        raise UserError("energy scan: no events")
    distinct = np.unique(np.round(e, 6))
    if distinct.size <= MAX_DISCRETE:
        centres = distinct
    else:
        c = np.asarray(SCAN_CENTRES)
        edges_all = _edges(c)
        n = np.histogram(e, bins=edges_all)[0]
        centres = c[n > 0]
    return centres, _edges(centres)


def _edges(centres: np.ndarray) -> np.ndarray:
    c = np.asarray(centres, dtype=np.float64)
    if c.size == 1:
        return np.array([c[0] / 1.1, c[0] * 1.1])
    mid = np.sqrt(c[1:] * c[:-1])
    return np.concatenate([[c[0] ** 2 / mid[0]], mid, [c[-1] ** 2 / mid[-1]]])


def calibrated_energy(table: FeatureTable, sampling_fractions: np.ndarray | None) -> np.ndarray:
    """``sum_l E_l / f_l`` per event (GeV); ``None`` fractions: the raw visible sum."""
    e_layer = table["e_layer"].astype(np.float64)
    if sampling_fractions is None:
        return e_layer.sum(axis=1)
    f = np.asarray(sampling_fractions, dtype=np.float64).reshape(-1)
    if f.size != e_layer.shape[1] or not (np.isfinite(f).all() and (f > 0).all()):
        raise UserError(f"sampling fractions: need {e_layer.shape[1]} positive values, got {f.size}")
    return e_layer @ (1.0 / f)


def _stats(x: np.ndarray) -> tuple[float, float, float]:
    """mean, std, standard error of the mean."""
    n = x.size
    sd = float(x.std(ddof=1)) if n > 1 else 0.0
    return float(x.mean()), sd, sd / math.sqrt(max(n, 1))


def bin_summary(table: FeatureTable, e_cal: np.ndarray, edges: np.ndarray) -> list[dict[str, Any]]:
    """Per bin: ``n``, ``response``, ``resolution``, ``hits``, ``shower_max`` and their errors."""
    e = table["e_primary"]
    idx = np.searchsorted(edges, e, side="right") - 1
    out = []
    for b in range(len(edges) - 1):
        sel = idx == b
        n = int(sel.sum())
        row: dict[str, Any] = {"n": n}
        if n >= 2:
            ratio = e_cal[sel] / e[sel]
            m, sd, sem = _stats(ratio)
            row["response"], row["response_err"] = m, sem
            res = sd / m if m > 0 else float("nan")
            row["resolution"], row["resolution_err"] = res, res / math.sqrt(2.0 * (n - 1))
            row["hits"], _, row["hits_err"] = _stats(table["n_hits_scan"][sel])
            row["shower_max"], _, row["shower_max_err"] = _stats(table["max_z"][sel])
        out.append(row)
    return out


def _diff(ref: dict[str, Any], oth: dict[str, Any], q: str) -> tuple[float, float]:
    r, o = ref[q], oth[q]
    re, oe = ref[f"{q}_err"], oth[f"{q}_err"]
    if q == "shower_max":
        return o - r, math.hypot(re, oe)
    if r == 0:
        return (0.0 if o == 0 else float("inf")), float("inf")
    ratio = o / r
    err = abs(ratio) * math.hypot(re / r, oe / o if o else 0.0)
    return ratio - 1.0, err


def differences(ref_bins: list[dict[str, Any]], bins: list[dict[str, Any]], centres: np.ndarray,
                min_events: int = MIN_EVENTS) -> list[dict[str, Any]]:
    """Per bin: ``d_<q>`` (relative, or layers for the shower maximum), ``d_<q>_err`` and
    ``ok_<q>`` (within :data:`TARGETS`); bins with too few events have ``skipped``."""
    out = []
    for c, r, o in zip(centres, ref_bins, bins, strict=True):
        row: dict[str, Any] = {"energy": float(c), "n_ref": r["n"], "n": o["n"]}
        if min(r["n"], o["n"]) < min_events:
            row["skipped"] = f"fewer than {min_events} events (reference {r['n']}, sample {o['n']})"
        else:
            for q in QUANTITIES:
                d, err = _diff(r, o, q)
                row[f"d_{q}"], row[f"d_{q}_err"] = d, err
                row[f"ok_{q}"] = bool(abs(d) <= TARGETS[q])
        out.append(row)
    return out


def worst(diffs: list[dict[str, Any]]) -> dict[str, dict[str, Any] | None]:
    """Per quantity the bin with the largest |difference|: ``{"value", "error", "energy"}``."""
    out: dict[str, dict[str, Any] | None] = {}
    for q in QUANTITIES:
        rows = [r for r in diffs if f"d_{q}" in r and math.isfinite(r[f"d_{q}"])]
        if not rows:
            out[q] = None
            continue
        w = max(rows, key=lambda r: abs(r[f"d_{q}"]))
        out[q] = {"value": abs(w[f"d_{q}"]), "error": w[f"d_{q}_err"], "energy": w["energy"]}
    return out


def energy_scan(tables: dict[str, FeatureTable], sampling_fractions: np.ndarray | None,
                min_events: int = MIN_EVENTS) -> dict[str, Any]:
    """The scan of every sample (``tables`` keyed by label, ``"reference"`` first) and the
    differences of every other sample to the reference; JSON-ready.

    Returns ``{"centres", "edges", "bins": {label: [...]}, "diffs": {label: [...]},
    "worst": {label: {...}}, "targets", "calibrated"}``.
    """
    ref = tables["reference"]
    centres, edges = energy_bins(ref["e_primary"])
    bins = {k: bin_summary(t, calibrated_energy(t, sampling_fractions), edges)
            for k, t in tables.items()}
    diffs = {k: differences(bins["reference"], b, centres, min_events)
             for k, b in bins.items() if k != "reference"}
    return {"centres": centres.tolist(), "edges": edges.tolist(), "bins": bins, "diffs": diffs,
            "worst": {k: worst(d) for k, d in diffs.items()}, "targets": dict(TARGETS),
            "calibrated": sampling_fractions is not None, "min_events": min_events}


__all__ = ["MIN_EVENTS", "SCAN_CENTRES", "SCAN_HIT_THRESHOLD_GEV", "TARGETS", "bin_summary",
           "calibrated_energy", "differences", "energy_bins", "energy_scan", "worst"]
