"""Shower observables, vectorised over events and streamed over files.

Images are ``(N, X, Y, Z)`` float32 cell energies in GeV with the layer axis ``z`` last; primary
energies are ``(N,)`` in GeV. Everything here reduces an image to a handful of numbers per event
(a :class:`FeatureTable`), so a file much larger than memory is processed one chunk at a time
(:func:`features_from_file`) and only the small per-event table is kept.

Coordinates. The 3DGAN moments use the *cell index* ``i = 0 .. n-1`` as coordinate, exactly as
the 3DGAN analysis code (Khattak et al., EPJC 82 (2022) 386). The CaloChallenge-style per-layer
centre of energy and width use the cell index relative to the grid centre,
``u = i - (n - 1) / 2`` (so 0 is the beam axis of a centred shower), in cell units.

Undefined values. An event (or a layer) with zero visible energy has no centroid: its moments,
centres and widths are set to 0 and the column ``empty`` flags the event; the 3DGAN metric
excludes empty events from moment averages (see :mod:`caloforge.physics.shape_metric`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from caloforge.errors import UserError

#: Default cell threshold for the hit multiplicity, GeV (0.3 MeV).
HIT_THRESHOLD_GEV = 3e-4
#: Cell threshold of ``n_hits_scan`` (the per-energy hit count of the energy scan), GeV (10 keV).
SCAN_HIT_THRESHOLD_GEV = 1e-5

#: Scalar feature columns (one number per event), in table order.
SCALAR_FEATURES = (
    "e_primary",   # GeV
    "e_vis",       # GeV, sum of all cells
    "e_ratio",     # e_vis / e_primary
    "m1_x", "m1_y", "m1_z",   # centroid, cell index
    "m2_x", "m2_y", "m2_z",   # second central moment, cell index^2
    "max_x", "max_y", "max_z",  # index of the profile maximum
    "n_hits",      # cells above the hit threshold
    "sparsity",    # fraction of cells with zero energy
)
#: Per-layer feature columns (an array (N, Z) per event).
LAYER_FEATURES = ("e_layer", "ec_x", "ec_y", "width_x", "width_y")
#: Profile columns: the image summed over the two other axes, (N, X), (N, Y), (N, Z), GeV.
PROFILE_FEATURES = ("profile_x", "profile_y", "profile_z")

AXES = ("x", "y", "z")


def check_images(images: np.ndarray, energies: np.ndarray, what: str = "showers") -> tuple[np.ndarray, np.ndarray]:
    """``(images float32 (N, X, Y, Z), energies float64 (N,))``, or a :class:`UserError` naming
    ``what`` when the shapes do not fit."""
    images = np.asarray(images)
    energies = np.asarray(energies, dtype=np.float64).reshape(-1)
    if images.ndim != 4:
        raise UserError(f"{what}: images have shape {images.shape}, expected (N, X, Y, Z)")
    if images.shape[0] != energies.shape[0]:
        raise UserError(f"{what}: {images.shape[0]} images but {energies.shape[0]} energies")
    if images.dtype != np.float32:
        images = images.astype(np.float32)
    return images, energies


def profiles(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(p_x, p_y, p_z, e_xz, e_yz)`` for images ``(N, X, Y, Z)`` (GeV).

    ``p_a`` is the image summed over the two other axes (``(N, n_a)``); ``e_xz`` (``(N, X, Z)``)
    and ``e_yz`` (``(N, Y, Z)``) are the per-layer transverse projections. Two passes over the
    images, accumulated in float32 (sums of <= 625 cells; relative error ~1e-7).
    """
    e_xz = images.sum(axis=2)          # (N, X, Z)
    e_yz = images.sum(axis=1)          # (N, Y, Z)
    p_x = e_xz.sum(axis=2)
    p_y = e_yz.sum(axis=2)
    p_z = e_xz.sum(axis=1)
    return p_x, p_y, p_z, e_xz, e_yz


def moments_from_profiles(prof: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centroid and second central moment of profiles ``(N, n)`` with the cell index as coordinate.

    m1 = sum_i i S(i) / E, m2 = sum_i (i - m1)^2 S(i) / E, E = sum_i S(i) (3DGAN definition).
    Returns ``(m1, m2, nonempty)``; events with E = 0 get m1 = m2 = 0 and ``nonempty`` False.
    """
    prof = np.asarray(prof, dtype=np.float64)
    idx = np.arange(prof.shape[1], dtype=np.float64)
    tot = prof.sum(axis=1)
    nonempty = tot > 0
    safe = np.where(nonempty, tot, 1.0)
    m1 = (prof @ idx) / safe
    m2 = (prof @ (idx * idx)) / safe - m1 * m1
    m2 = np.maximum(m2, 0.0)  # rounding
    m1[~nonempty] = 0.0
    m2[~nonempty] = 0.0
    return m1, m2, nonempty


@dataclass
class FeatureTable:
    """Per-event features: ``columns[name]`` is ``(N,)`` (scalars) or ``(N, n)`` (per-layer, profiles).

    Scalars are float64; per-layer and profile arrays are float32 (GeV or cell units).
    """

    columns: dict[str, np.ndarray]
    grid: tuple[int, int, int]
    hit_threshold: float = HIT_THRESHOLD_GEV
    extra: dict[str, object] = field(default_factory=dict)
    scan_threshold: float = SCAN_HIT_THRESHOLD_GEV

    def __len__(self) -> int:
        return int(self.columns["e_primary"].shape[0])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    @property
    def n_events(self) -> int:
        return len(self)

    def select(self, mask: np.ndarray) -> FeatureTable:
        """A table holding the events where ``mask`` (bool or index array) selects."""
        return FeatureTable({k: v[mask] for k, v in self.columns.items()}, self.grid,
                            self.hit_threshold, dict(self.extra), self.scan_threshold)

    @staticmethod
    def concatenate(tables: list[FeatureTable]) -> FeatureTable:
        if not tables:
            raise ValueError("no feature tables to concatenate")
        first = tables[0]
        cols = {k: np.concatenate([t.columns[k] for t in tables]) for k in first.columns}
        return FeatureTable(cols, first.grid, first.hit_threshold, dict(first.extra),
                            first.scan_threshold)

    def high_level(self, include_layers: bool = True) -> tuple[np.ndarray, list[str]]:
        """The matrix of high-level features used by separation power / FPD / KPD / classifier.

        Scalars except ``e_primary`` (the condition, not an output) and ``e_vis`` (redundant with
        ``e_ratio`` at fixed primary energy), then (if ``include_layers``) each layer's energy
        fraction of E_primary, centres and widths. Returns ``(X (N, d) float64, names)``.
        """
        names = [n for n in SCALAR_FEATURES if n not in ("e_primary", "e_vis")]
        mats = [self.columns[n][:, None].astype(np.float64) for n in names]
        if include_layers:
            nz = self.grid[2]
            e_prim = self.columns["e_primary"][:, None]
            for lf in LAYER_FEATURES:
                arr = self.columns[lf].astype(np.float64)
                if lf == "e_layer":
                    arr = arr / e_prim
                    tag = "f_layer"
                else:
                    tag = lf
                mats.append(arr)
                names.extend(f"{tag}_{k:02d}" for k in range(nz))
        return np.hstack(mats), names


def event_features(
    images: np.ndarray, energies: np.ndarray, hit_threshold: float = HIT_THRESHOLD_GEV,
    scan_threshold: float = SCAN_HIT_THRESHOLD_GEV,
) -> FeatureTable:
    """Compute the per-event :class:`FeatureTable` of one block of showers.

    ``images`` (N, X, Y, Z) GeV, ``energies`` (N,) primary energies in GeV. ``n_hits`` counts
    cells above ``hit_threshold``, ``n_hits_scan`` (not a high-level feature; used by the energy
    scan) cells above ``scan_threshold``.
    """
    images, energies = check_images(images, energies)
    n, nx, ny, nz = images.shape
    p_x, p_y, p_z, e_xz, e_yz = profiles(images)
    cols: dict[str, np.ndarray] = {"e_primary": energies}
    e_vis = p_z.sum(axis=1, dtype=np.float64)
    cols["e_vis"] = e_vis
    cols["e_ratio"] = e_vis / energies
    for a, p in zip(AXES, (p_x, p_y, p_z), strict=True):
        m1, m2, _ = moments_from_profiles(p)
        cols[f"m1_{a}"] = m1
        cols[f"m2_{a}"] = m2
    for a, p in zip(AXES, (p_x, p_y, p_z), strict=True):
        cols[f"max_{a}"] = np.argmax(p, axis=1).astype(np.float64)
    flat = images.reshape(n, -1)
    cols["n_hits"] = np.count_nonzero(flat > hit_threshold, axis=1).astype(np.float64)
    cols["sparsity"] = 1.0 - np.count_nonzero(flat, axis=1) / flat.shape[1]
    cols["n_hits_scan"] = np.count_nonzero(flat > scan_threshold, axis=1).astype(np.float64)
    # per layer: energy, centre of energy and width in cell units about the grid centre
    e_layer = p_z.astype(np.float64)                        # (N, Z)
    safe = np.where(e_layer > 0, e_layer, 1.0)
    cols["e_layer"] = p_z.astype(np.float32)
    for a, proj, na in (("x", e_xz, nx), ("y", e_yz, ny)):
        u = np.arange(na, dtype=np.float64) - (na - 1) / 2.0
        proj64 = proj.astype(np.float64)
        c1 = np.einsum("nal,a->nl", proj64, u) / safe
        c2 = np.einsum("nal,a->nl", proj64, u * u) / safe
        w = np.sqrt(np.maximum(c2 - c1 * c1, 0.0))
        c1[e_layer <= 0] = 0.0
        w[e_layer <= 0] = 0.0
        cols[f"ec_{a}"] = c1.astype(np.float32)
        cols[f"width_{a}"] = w.astype(np.float32)
    cols["profile_x"] = p_x.astype(np.float32, copy=False)
    cols["profile_y"] = p_y.astype(np.float32, copy=False)
    cols["profile_z"] = p_z.astype(np.float32, copy=False)
    return FeatureTable(cols, (nx, ny, nz), hit_threshold, scan_threshold=scan_threshold)


# ---------------------------------------------------------------------------- accumulators
class ProfileAccumulator:
    """Streaming mean and standard deviation of per-event vectors (e.g. profiles), per group.

    ``add(values (N, n), groups (N,) int)`` may be called chunk by chunk; ``mean(g)``,
    ``std(g)`` and ``sem(g)`` (standard error of the mean) give the result for group ``g``.
    Sums are kept in float64 (Welford is not needed at these dynamic ranges).
    """

    def __init__(self, n_values: int, n_groups: int = 1) -> None:
        self.count = np.zeros(n_groups, dtype=np.int64)
        self.s1 = np.zeros((n_groups, n_values))
        self.s2 = np.zeros((n_groups, n_values))

    def add(self, values: np.ndarray, groups: np.ndarray | None = None) -> None:
        v = np.asarray(values, dtype=np.float64)
        g = np.zeros(v.shape[0], dtype=np.int64) if groups is None else np.asarray(groups)
        np.add.at(self.count, g, 1)
        np.add.at(self.s1, g, v)
        np.add.at(self.s2, g, v * v)

    def mean(self, group: int = 0) -> np.ndarray:
        c = max(int(self.count[group]), 1)
        return self.s1[group] / c

    def std(self, group: int = 0) -> np.ndarray:
        c = max(int(self.count[group]), 1)
        m = self.s1[group] / c
        return np.sqrt(np.maximum(self.s2[group] / c - m * m, 0.0))

    def sem(self, group: int = 0) -> np.ndarray:
        return self.std(group) / np.sqrt(max(int(self.count[group]), 1))


class LogHistogram:
    """Streaming histogram of positive values on log-spaced bins (the cell-energy spectrum).

    Zeros (empty cells) are counted separately in ``n_zero``; values above the last edge go to
    the last bin, positive values below the first edge to the first bin.
    """

    def __init__(self, lo: float = 1e-6, hi: float = 1e3, n_bins: int = 90) -> None:
        self.edges = np.logspace(np.log10(lo), np.log10(hi), n_bins + 1)
        self._llo, self._lhi = np.log10(lo), np.log10(hi)
        self.counts = np.zeros(n_bins, dtype=np.int64)
        self.n_zero = 0

    def add(self, values: np.ndarray) -> None:
        v = np.asarray(values).reshape(-1)
        pos = v[v > 0]
        self.n_zero += int(v.size - pos.size)
        if pos.size == 0:
            return
        nb = self.counts.size
        idx = ((np.log10(pos.astype(np.float32)) - self._llo) * (nb / (self._lhi - self._llo)))
        idx = np.clip(idx.astype(np.int64), 0, nb - 1)
        self.counts += np.bincount(idx, minlength=nb)


# ---------------------------------------------------------------------------- files
def iter_file(path: str | os.PathLike[str], max_events: int | None = None,
              chunk_size: int = 1000, progress: bool = False, desc: str | None = None
              ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(images, energies)`` chunks of a shower file (optionally with a tqdm bar)."""
    from caloforge.data import open_showers

    with open_showers(path) as f:
        stop = f.n_events if max_events is None else min(f.n_events, max_events)
        it = f.iter_chunks(chunk_size, 0, stop)
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=stop, unit="ev", desc=desc or os.path.basename(str(path)),
                       leave=False, dynamic_ncols=True)
            for img, en in it:
                yield img, en
                bar.update(len(en))
            bar.close()
        else:
            yield from it


def features_from_file(
    path: str | os.PathLike[str],
    max_events: int | None = None,
    chunk_size: int = 1000,
    hit_threshold: float = HIT_THRESHOLD_GEV,
    spectrum: LogHistogram | None = None,
    progress: bool = False,
    scan_threshold: float = SCAN_HIT_THRESHOLD_GEV,
    cell_threshold: float = 0.0,
) -> FeatureTable:
    """Stream a shower file chunk by chunk into a :class:`FeatureTable`.

    Memory: one chunk of images plus ~1.5 kB of features per event (25^3 grid). If
    ``spectrum`` is given, every cell energy is also added to that histogram. Cells below
    ``cell_threshold`` GeV (if > 0) count as empty (a readout threshold).
    """
    table = features_from_chunks(iter_file(path, max_events, chunk_size, progress),
                                 hit_threshold, spectrum, scan_threshold, cell_threshold)
    table.extra["path"] = str(path)
    return table


def features_from_chunks(chunks: Iterator[tuple[np.ndarray, np.ndarray]],
                         hit_threshold: float = HIT_THRESHOLD_GEV,
                         spectrum: LogHistogram | None = None,
                         scan_threshold: float = SCAN_HIT_THRESHOLD_GEV,
                         cell_threshold: float = 0.0) -> FeatureTable:
    """:func:`features_from_file` for any stream of ``(images, energies)`` blocks (e.g. showers
    simulated on the fly)."""
    tables = []
    for img, en in chunks:
        if cell_threshold > 0:
            img = np.where(img >= cell_threshold, img, 0.0).astype(img.dtype, copy=False)
        tables.append(event_features(img, en, hit_threshold, scan_threshold))
        if spectrum is not None:
            spectrum.add(img)
    return FeatureTable.concatenate(tables)
