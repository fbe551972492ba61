"""How a shower's features move together: rank correlations of the scalar features per energy.

A generator can get every feature's distribution right and still be told apart from its Monte
Carlo by how the features fluctuate *together*: in the MC a wider shower has more hits above
0.3 MeV, and the classifier test reads that (docs/gan.md, "Where the AUC comes from": the hit
count and the sparsity separate at AUC 0.54 / 0.56 alone, 0.64 together). No marginal metric
(separation power, per-energy scan) sees it; this one does.

Per energy band (tertiles of the reference's ln E), each sample's scalar features are reduced
to their residuals about a quadratic trend in ln E fitted *in that sample* (so a wrong mean is
not counted here: the other metrics see it), and the Spearman rank correlation of every pair
of residuals is taken (ranks: the second moments have long tails at low energy). The metric
is the mean over bands and pairs of ``|rho_candidate - rho_reference|`` (``corr_mean_diff``);
the largest difference, its pair and band are reported beside it. Its noise is read against
the MC-vs-MC floor like every other metric. The standard error of one Spearman coefficient is
taken as ``(1 - rho^2) sqrt(1.06 / (n - 3))`` (Fieller, Hartley & Pearson, Biometrika 44 (1957)
470).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
from scipy.stats import rankdata

from caloforge.physics.observables import FeatureTable

#: Scalar features whose joint fluctuation is compared (the classifier's "scalars" less the
#: discrete profile maxima).
JOINT_FEATURES = ("e_ratio", "m1_x", "m1_y", "m1_z", "m2_x", "m2_y", "m2_z", "n_hits", "sparsity")
#: Fewest events of each sample in an energy band; with fewer the bands are merged.
MIN_BAND_EVENTS = 200
#: Energy bands (tertiles of the reference's ln E) when every band has enough events.
N_BANDS = 3


def band_edges(log_e: np.ndarray, n_bands: int = N_BANDS) -> np.ndarray:
    """Edges (n_bands + 1,) in ln E: quantiles of ``log_e``, each moved to the midpoint between
    the neighbouring distinct values (so that fixed energies never sit on an edge), the outer
    ones open."""
    inner = np.quantile(log_e, np.linspace(0, 1, n_bands + 1)[1:-1])
    values = np.unique(log_e)
    above = np.searchsorted(values, inner, side="right")      # first distinct value > edge
    ok = (above > 0) & (above < len(values))
    idx = np.clip(above, 1, max(len(values) - 1, 1))
    if len(values) > 1:
        inner = np.where(ok, 0.5 * (values[idx - 1] + values[idx]), inner)
    return np.concatenate([[-np.inf], inner, [np.inf]])


def trend_residuals(values: np.ndarray, log_e: np.ndarray) -> np.ndarray:
    """``values`` (N, F) less their least-squares quadratic trend in ``log_e`` (N,). A column
    that the trend explains to rounding (a constant, or a function of E alone at three or
    fewer energies) gives exact zeros, not rounding noise that would have ranks."""
    t = (log_e - log_e.mean()) / max(float(log_e.std()), 1e-12)   # conditioned design
    design = np.stack([np.ones_like(t), t, t * t], axis=1)
    coef, *_ = np.linalg.lstsq(design, values, rcond=None)
    res = values - design @ coef
    scale = np.abs(values).max(axis=0) if len(values) else np.zeros(values.shape[1])
    res[:, np.abs(res).max(axis=0) <= 1e-9 * np.maximum(scale, 1e-300)] = 0.0
    return res


def rank_correlations(residuals: np.ndarray) -> np.ndarray:
    """Spearman correlation matrix (F, F) of the columns of ``residuals`` (N, F). A constant
    column moves with nothing: its correlations are 0 (its diagonal 1), so a candidate whose
    feature is degenerate where the reference's is not is charged the reference's correlation."""
    ranks = rankdata(residuals, axis=0)      # ties (integer hit counts) share their mean rank
    ranks -= ranks.mean(axis=0)
    sd = np.sqrt((ranks * ranks).mean(axis=0))
    flat = sd <= 0                            # a constant column: no ranks to compare
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (ranks.T @ ranks) / len(ranks) / np.outer(sd, sd)
    corr[flat, :] = 0.0
    corr[:, flat] = 0.0
    np.fill_diagonal(corr, 1.0)
    return corr


def _finite_rows(table: FeatureTable, features: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(ln E (N',), features (N', F)) of the events whose energy is > 0 and whose features are
    finite (the rest cannot have a trend in ln E; files are checked for that on reading)."""
    e = np.asarray(table["e_primary"], dtype=np.float64)
    x = np.stack([np.asarray(table[f], dtype=np.float64) for f in features], axis=1)
    ok = np.isfinite(e) & (e > 0) & np.isfinite(x).all(axis=1)
    return np.log(e[ok]), x[ok]


def band_correlations(reference: FeatureTable, candidate: FeatureTable,
                      features: tuple[str, ...] = JOINT_FEATURES, n_bands: int = N_BANDS
                      ) -> list[dict[str, Any]]:
    """Per energy band: ``{"energy_gev", "n_reference", "n_candidate", "reference",
    "candidate"}``, the last two the rank-correlation matrices (F, F) of the features'
    residuals (module doc). Bands with fewer than :data:`MIN_BAND_EVENTS` reference events are
    merged into fewer bands (the bands depend on the reference alone, so a candidate and the
    floor share them); a band with fewer candidate events is left out. ``energy_gev`` is the
    reference's range in the band."""
    (le_r, xr), (le_c, xc) = (_finite_rows(t, features) for t in (reference, candidate))
    if len(le_r) == 0:
        return []
    # the bands depend on the reference alone: a candidate and the floor share them
    for bands in range(n_bands, 0, -1):
        edges = band_edges(le_r, bands)
        if bands == 1 or min(np.count_nonzero((le_r >= lo) & (le_r < hi))
                             for lo, hi in itertools.pairwise(edges)) >= MIN_BAND_EVENTS:
            break
    out = []
    for lo, hi in itertools.pairwise(edges):
        sr, sc = (le_r >= lo) & (le_r < hi), (le_c >= lo) & (le_c < hi)
        nr, nc = int(sr.sum()), int(sc.sum())
        if min(nr, nc) < MIN_BAND_EVENTS:
            continue
        out.append({"energy_gev": [float(np.exp(le_r[sr].min())), float(np.exp(le_r[sr].max()))],
                    "n_reference": nr, "n_candidate": nc,
                    "reference": rank_correlations(trend_residuals(xr[sr], le_r[sr])),
                    "candidate": rank_correlations(trend_residuals(xc[sc], le_c[sc]))})
    return out


def correlation_difference(reference: FeatureTable, candidate: FeatureTable,
                           features: tuple[str, ...] = JOINT_FEATURES,
                           n_bands: int = N_BANDS) -> dict[str, Any]:
    """Compare the rank correlations of ``features``' residuals (module doc).

    Returns ``{"corr_mean_diff", "corr_max_diff", "corr_detail"}``; the detail holds per band
    the energy range, the event counts and the five pairs that differ most. ``None`` values
    (and a ``note``) when no band has two samples of at least :data:`MIN_BAND_EVENTS` events.
    """
    pairs = list(itertools.combinations(range(len(features)), 2))
    diffs: list[float] = []
    detail: list[dict[str, Any]] = []
    worst: tuple[float, str, int] | None = None
    for b, band in enumerate(band_correlations(reference, candidate, features, n_bands)):
        cr, cc = band["reference"], band["candidate"]
        nr, nc = band["n_reference"], band["n_candidate"]
        rows: list[dict[str, Any]] = []
        for i, j in pairs:   # rank_correlations is finite everywhere (constants: 0)
            d = float(cc[i, j] - cr[i, j])
            err = math.hypot((1 - cr[i, j] ** 2) * math.sqrt(1.06 / (nr - 3)),
                             (1 - cc[i, j] ** 2) * math.sqrt(1.06 / (nc - 3)))
            name = f"{features[i]}-{features[j]}"
            rows.append({"pair": name, "reference": float(cr[i, j]),
                         "candidate": float(cc[i, j]), "diff": d, "error": err})
            diffs.append(abs(d))
            if worst is None or abs(d) > worst[0]:
                worst = (abs(d), name, b)
        rows.sort(key=lambda r: -abs(r["diff"]))
        detail.append({"band": b, "energy_gev": band["energy_gev"], "n_reference": nr,
                       "n_candidate": nc, "largest": rows[:5]})
    if worst is None:   # no band with enough events of both samples
        return {"corr_mean_diff": None, "corr_max_diff": None,
                "corr_detail": {"note": f"no energy band with {MIN_BAND_EVENTS} events of "
                                        "each sample: feature correlations not compared"}}
    return {"corr_mean_diff": float(np.mean(diffs)), "corr_max_diff": worst[0],
            "corr_detail": {"features": list(features), "bands": detail,
                            "largest": {"pair": worst[1], "band": worst[2]}}}


__all__ = ["JOINT_FEATURES", "MIN_BAND_EVENTS", "N_BANDS", "band_correlations", "band_edges",
           "correlation_difference",
           "rank_correlations", "trend_residuals"]
