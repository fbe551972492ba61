"""The 3DGAN shower-shape accuracy metric (lower is better).

Definition (Khattak et al., EPJC 82 (2022) 386; Rehm et al., arXiv 2103.10142; see
``docs/validation.md``). Energy bins: ``all`` events, and 50/100/200/250/300/400/500 GeV +- 5 GeV.
For each event and axis a in {x, y, z} the profile S_a(i) is the image summed over the two other
axes; its moments use the cell index i = 0..n-1 as coordinate:
m1 = sum_i i S(i) / E, m2 = sum_i (i - m1)^2 S(i) / E (E = sum_i S(i)).
Per bin b, with moments and profiles averaged over the events of the bin:

    P_b = (1/2) sum_{k=1,2} (1/3) sum_a |m_ref - m_cand| / m_ref
    Q_b = (1/3) sum_a (1/N_a) sum_i |S_ref(i) - S_cand(i)| / S_ref(i)
    metric = mean_b P_b + mean_b Q_b

P_b is counted once (the original 3DGAN analysis code added it twice).

Choices made here (all documented in ``docs/validation.md``; none can give NaN):

* Binning uses each sample's *own* primary energies: reference events are binned by the
  reference energies, candidate events by the candidate energies. The candidate is meant to be
  generated at the reference energies, in which case the bins hold the same events.
* A bin with fewer than ``min_events`` (default 20) events in either sample, or without any
  reference event with visible energy, is skipped: it is listed in the breakdown with a note and
  excluded from both means. If every bin is skipped a :class:`~caloforge.errors.UserError` is
  raised.
* Events with zero visible energy have no centroid: they are left out of the moment averages but
  kept (as zeros) in the profile averages, so a model producing empty showers is penalised. If a
  candidate bin has no non-empty event its moments count as 0 (relative difference 1).
* Profile cells with S_ref(i) = 0 (no reference energy in that cell, averaged over the bin) are
  left out of the profile sum and N_a counts only cells with S_ref(i) > 0; the candidate energy
  in such cells is reported in the breakdown (``cand_energy_outside``).
* A reference moment with |m_ref| < 1e-3 (cell units) is replaced by 1e-3 in the denominator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from caloforge.errors import UserError
from caloforge.physics.observables import (
    AXES,
    FeatureTable,
    check_images,
    moments_from_profiles,
    profiles,
)

#: Energy-bin centres in GeV (``None`` = all events), as in the 3DGAN analysis.
DEFAULT_BINS: tuple[float | None, ...] = (None, 50.0, 100.0, 200.0, 250.0, 300.0, 400.0, 500.0)
#: Half width of each energy bin, GeV.
DEFAULT_HALF_WIDTH = 5.0
#: Bins with fewer events than this (in either sample) are skipped.
DEFAULT_MIN_EVENTS = 20
#: Floor on |m_ref| in the moment-term denominator (cell units).
MOMENT_FLOOR = 1e-3


@dataclass
class ShapeSample:
    """What the metric needs from a sample: primary energies (N,) GeV and profiles (N, n_a)."""

    energies: np.ndarray
    prof: tuple[np.ndarray, np.ndarray, np.ndarray]

    @property
    def n_events(self) -> int:
        return int(self.energies.shape[0])

    @property
    def grid(self) -> tuple[int, int, int]:
        return tuple(int(p.shape[1]) for p in self.prof)  # type: ignore[return-value]


def shape_sample(sample: object, what: str = "sample") -> ShapeSample:
    """Turn ``(images, energies)``, a :class:`FeatureTable` or a :class:`ShapeSample` into the
    profiles the metric needs (images: (N, X, Y, Z) GeV; energies: (N,) GeV)."""
    if isinstance(sample, ShapeSample):
        return sample
    if isinstance(sample, FeatureTable):
        return ShapeSample(np.asarray(sample["e_primary"], dtype=np.float64),
                           (sample["profile_x"], sample["profile_y"], sample["profile_z"]))
    if isinstance(sample, tuple | list) and len(sample) == 2:
        images, energies = check_images(sample[0], sample[1], what)
        p_x, p_y, p_z, _, _ = profiles(images)
        return ShapeSample(energies, (p_x, p_y, p_z))
    raise TypeError(f"{what}: expected (images, energies), FeatureTable or ShapeSample, "
                    f"got {type(sample).__name__}")


@dataclass
class _BinStats:
    n: int
    n_nonempty: int
    m: np.ndarray                  # (2, 3) mean moments over non-empty events
    s: tuple[np.ndarray, ...]      # event-averaged profiles, float64


def _bin_masks(energies: np.ndarray, bins: Sequence[float | None], half: float) -> list[np.ndarray | None]:
    out: list[np.ndarray | None] = []
    for c in bins:
        out.append(None if c is None else (np.abs(energies - c) <= half))
    return out


def _stats(sample: ShapeSample, mom: np.ndarray, nonempty: np.ndarray,
           masks: list[np.ndarray | None]) -> list[_BinStats]:
    """Per-bin event counts, mean moments (non-empty events) and mean profiles (all events)."""
    out = []
    for mask in masks:
        if mask is None:
            n = sample.n_events
            ne = nonempty
            mm = mom
            profs = sample.prof
        else:
            n = int(mask.sum())
            ne = nonempty[mask]
            mm = mom[mask]
            profs = tuple(p[mask] for p in sample.prof)
        n_ne = int(ne.sum())
        if n_ne:
            m = mm[ne].mean(axis=0) if n_ne < len(ne) else mm.mean(axis=0)
        else:
            m = np.zeros((2, 3))
        s = tuple(p.mean(axis=0, dtype=np.float64) if n else np.zeros(p.shape[1]) for p in profs)
        out.append(_BinStats(n, n_ne, m, s))
    return out


def _moments(sample: ShapeSample) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2, 3) moments [k, axis] and the (N,) non-empty flag."""
    mom = np.empty((sample.n_events, 2, 3))
    nonempty = None
    for j, p in enumerate(sample.prof):
        m1, m2, ne = moments_from_profiles(p)
        mom[:, 0, j] = m1
        mom[:, 1, j] = m2
        nonempty = ne
    assert nonempty is not None
    return mom, nonempty


def _label(c: float | None) -> str:
    return "all" if c is None else f"{c:g}"


class ShapeMetric:
    """The 3DGAN metric with the reference precomputed once; call it on candidates.

    >>> sm = ShapeMetric((ref_images, ref_energies))          # doctest: +SKIP
    >>> sm((cand_images, cand_energies))                      # float, lower is better
    >>> sm.breakdown((cand_images, cand_energies))            # per bin, axis and moment

    ``reference`` / candidates: ``(images (N, X, Y, Z) GeV, energies (N,) GeV)``, a
    :class:`~caloforge.physics.observables.FeatureTable` or a :class:`ShapeSample`. A call
    on 10k showers of 25^3 costs two passes over the images (~0.3 s on one core).
    """

    def __init__(self, reference: object, bins: Sequence[float | None] = DEFAULT_BINS,
                 half_width: float = DEFAULT_HALF_WIDTH, min_events: int = DEFAULT_MIN_EVENTS) -> None:
        self.bins = tuple(bins)
        self.half_width = float(half_width)
        self.min_events = int(min_events)
        ref = shape_sample(reference, "reference")
        if ref.n_events == 0:
            raise UserError("reference: no events")
        self.grid = ref.grid
        mom, ne = _moments(ref)
        self._ref = _stats(ref, mom, ne, _bin_masks(ref.energies, self.bins, self.half_width))

    def _compare(self, candidate: object) -> dict:
        cand = shape_sample(candidate, "candidate")
        if cand.grid != self.grid:
            raise UserError(f"candidate: grid {cand.grid} does not match the reference grid {self.grid}")
        if cand.n_events == 0:
            raise UserError("candidate: no events")
        mom, ne = _moments(cand)
        cstats = _stats(cand, mom, ne, _bin_masks(cand.energies, self.bins, self.half_width))
        rows = []
        for c, r, k in zip(self.bins, self._ref, cstats, strict=True):
            row: dict = {"bin": _label(c), "e_lo": None if c is None else c - self.half_width,
                         "e_hi": None if c is None else c + self.half_width,
                         "n_ref": r.n, "n_cand": k.n, "skipped": False, "note": ""}
            if min(r.n, k.n) < self.min_events:
                row["skipped"] = True
                row["note"] = (f"fewer than {self.min_events} events "
                               f"(reference {r.n}, candidate {k.n})")
                rows.append(row)
                continue
            if r.n_nonempty == 0:
                row["skipped"] = True
                row["note"] = "no reference event with visible energy"
                rows.append(row)
                continue
            den = np.maximum(np.abs(r.m), MOMENT_FLOOR)
            rel = np.abs(r.m - k.m) / den                      # (2, 3)
            p_b = 0.5 * float(rel.mean(axis=1).sum())
            q_axes = {}
            outside = {}
            for a, s_ref, s_c in zip(AXES, r.s, k.s, strict=True):
                pos = s_ref > 0
                q_axes[a] = float(np.mean(np.abs(s_ref[pos] - s_c[pos]) / s_ref[pos]))
                outside[a] = float(s_c[~pos].sum())
            q_b = float(np.mean(list(q_axes.values())))
            row.update({
                "P": p_b, "Q": q_b,
                "moments": {f"m{kk + 1}": {a: float(rel[kk, j]) for j, a in enumerate(AXES)}
                            for kk in range(2)},
                "profiles": q_axes,
                "cand_energy_outside": outside,
                "n_ref_empty": r.n - r.n_nonempty, "n_cand_empty": k.n - k.n_nonempty,
            })
            if k.n_nonempty == 0:
                row["note"] = "candidate bin has only empty showers (moments counted as 0)"
            rows.append(row)
        used = [row for row in rows if not row["skipped"]]
        if not used:
            notes = "; ".join(f"{row['bin']}: {row['note']}" for row in rows)
            raise UserError(f"3DGAN metric: every energy bin was skipped ({notes})")
        p_mean = float(np.mean([row["P"] for row in used]))
        q_mean = float(np.mean([row["Q"] for row in used]))
        return {"metric": p_mean + q_mean, "moment_term": p_mean, "profile_term": q_mean,
                "n_bins_used": len(used), "min_events": self.min_events,
                "half_width_gev": self.half_width, "bins": rows}

    def __call__(self, candidate: object) -> float:
        """The metric value (float >= 0, lower is better)."""
        return float(self._compare(candidate)["metric"])

    def breakdown(self, candidate: object) -> dict:
        """Metric, its two terms and per-bin ``P``, ``Q``, per-axis / per-moment terms, notes."""
        return self._compare(candidate)


def metric(reference: object, candidate: object, **kwargs: object) -> float:
    """The 3DGAN shape metric of ``candidate`` against ``reference`` (see module doc)."""
    return ShapeMetric(reference, **kwargs)(candidate)  # type: ignore[arg-type]


def metric_breakdown(reference: object, candidate: object, **kwargs: object) -> dict:
    """:meth:`ShapeMetric.breakdown` in one call."""
    return ShapeMetric(reference, **kwargs).breakdown(candidate)  # type: ignore[arg-type]
