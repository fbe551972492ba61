"""Grindhammer–Peters ("GFlash") parametrized electromagnetic showers, vectorised with numpy.

References: G. Grindhammer, M. Rudowicz, S. Peters, NIM A290 (1990) 469;
G. Grindhammer, S. Peters, "The parameterized simulation of electromagnetic showers in
homogeneous and sampling calorimeters", hep-ex/0001020 (cited as GP below, equation numbers
refer to it). Formulas are collected in ``shared/reference/gflash.md`` and ``docs/mc.md``.

One event (primary electron of energy E along the calorimeter axis, entering at the centre of
the grid):

1. correlated draw of ``(ln T, ln alpha)`` (GP eqs. for the sampling case: means shifted by
   ``-0.55/F_S - 0.69 (1 - e_hat)`` and ``-0.476/F_S``, widths and correlation of the sampling
   fit; homogeneous formulas when the first layer has no absorber);
2. ``N`` spots (``N = 10.3/c_S E^0.959`` for sampling, ``93 ln Z E^0.876`` homogeneous), depths
   drawn from the *spot* Gamma profile (``T_s = T (0.698 + 0.00212 Z)``,
   ``alpha_s = alpha (0.639 + 0.00334 Z)``); each spot carries the energy profile / spot
   profile ratio as weight (self-normalised so the weights add up to E exactly), so the energy
   follows the energy profile and the spot density the spot profile, as in GFlash;
3. radius from the core + tail profile at ``tau = t/T`` (``R_C``, ``R_T``, ``p`` with the
   sampling corrections), by inverting ``F(r) = r^2/(r^2 + R^2)``: ``r = R sqrt(u/(1-u))`` in
   Moliere radii, converted to mm with the Moliere radius of the layer the spot falls in;
   azimuth uniform;
4. depth (X0) -> layer with the real layer boundaries; (x, y) -> cell; spots behind the last
   layer or outside the grid are leakage (lost);
5. sampling fluctuations: the visible energy of a cell is ``f_l * c_l^2 * Gamma(dE/c_l^2)``
   (mean ``f_l dE``, variance ``f_l^2 c_l^2 dE``), ``f_l`` and ``c_l`` the layer's sampling
   fraction and stochastic term. A sum of Gamma variables with a common scale is Gamma, so this
   per-cell draw is *exactly* the per-spot draw of GP summed over the cell's spots, and the
   total resolution is ``c_S / sqrt(E)``.

Randomness: event ``i`` (global index) draws from its own generator seeded with
``SeedSequence([seed, i])``, so results are bit-identical whatever the chunking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from caloforge.detector import Calorimeter

SPOT_STREAM = 0
ENERGY_STREAM = 1


def event_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of event ``index`` for ``seed`` (independent of any chunking)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, index],
                                                                      spawn_key=(SPOT_STREAM,))))


@dataclass(frozen=True)
class _Medium:
    """Per-detector constants, precomputed once."""

    Z: float
    E_c: float  # MeV
    inv_FS: float  # 1/F_S (0 for homogeneous)
    one_m_ehat: float  # 1 - e_hat
    sampling: bool
    c_S: float
    edges: np.ndarray  # layer edges in X0
    depth: float
    f: np.ndarray
    c2: np.ndarray  # c_S^2 per layer
    fc2: np.ndarray  # f * c_S^2 per layer
    rm: np.ndarray  # Moliere radius per layer, mm
    inv_cell: float
    nx: int
    ny: int
    nl: int
    rm32: np.ndarray  # Moliere radius per layer (+ one entry for "behind"), float32, mm
    bin_width: float  # depth grid (X0): bins narrower than half the thinnest layer
    bin_layer: np.ndarray  # layer at the start of each bin (nl at/behind the back face)
    bin_mid: np.ndarray  # bin centres (X0), for the radial-parameter tables
    edges32: np.ndarray  # layer upper edges (+ inf), float32, for the one-step correction

    def depth_bin(self, t: np.ndarray) -> np.ndarray:
        """Index of the depth-grid bin of ``t`` (X0, float32); the last bin collects everything
        behind the calorimeter."""
        b = t * np.float32(1.0 / self.bin_width)
        np.minimum(b, len(self.bin_layer) - 1, out=b)
        return b.astype(np.intp)

    def layer_of(self, t: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
        """Layer index of depths ``t`` (X0; float32): a table look-up on the depth grid, then at
        most one step up (each bin holds at most one edge). Depths behind the calorimeter give
        ``nl`` (callers mask them as leakage)."""
        layer = self.bin_layer[self.depth_bin(t) if b is None else b]
        layer += t >= self.edges32[layer]
        return layer

    @classmethod
    def of(cls, det: Calorimeter) -> _Medium:
        m = det.shower_medium()
        c = np.asarray(det.layer_c_S)
        f = np.asarray(det.layer_sampling_fraction)
        inv_fs = 0.0 if m["homogeneous"] else 1.0 / m["F_S"]
        edges = np.asarray(det.layer_edges_x0, dtype=np.float64)
        nl = det.n_layers
        # >= 1024 bins and narrower than half the thinnest layer
        width = min(0.5 * float(np.diff(edges).min()), float(edges[-1]) / 1024.0)
        starts = np.arange(int(np.ceil(edges[-1] / width)) + 1) * width
        # the layer containing each bin's start; nl for bins at/behind the back face
        bin_layer = np.searchsorted(edges, starts, side="right") - 1
        # float32 rounding of t may cross an edge: correction step compares in float32 too
        edges32 = np.append(edges[1:].astype(np.float32), np.float32(np.inf))
        rm32 = np.append(np.asarray(det.layer_R_M_mm), det.layer_R_M_mm[-1]).astype(np.float32)
        return cls(Z=m["Z"], E_c=m["E_c"], inv_FS=inv_fs, one_m_ehat=1.0 - m["e_hat"],
                   sampling=not m["homogeneous"], c_S=m["c_S"],
                   edges=np.asarray(det.layer_edges_x0), depth=det.depth_x0, f=f, c2=c * c,
                   fc2=f * c * c, rm=np.asarray(det.layer_R_M_mm), inv_cell=1.0 / det.cell_size_mm,
                   nx=det.n_cells[0], ny=det.n_cells[1], nl=nl, rm32=rm32, bin_width=width,
                   bin_layer=np.minimum(bin_layer, nl).astype(np.intp),
                   bin_mid=(starts + 0.5 * width).astype(np.float32), edges32=edges32)


def longitudinal_parameters(energy: float, med: _Medium) -> tuple[float, float, float, float, float]:
    """GP means/sigmas/correlation of ``(ln T, ln alpha)``: ``(mu_T, mu_a, s_T, s_a, rho)``."""
    ly = math.log(energy * 1000.0 / med.E_c)
    t_hom = ly - 0.812
    a_hom = 0.81 + (0.458 + 2.26 / med.Z) * ly
    if med.sampling:
        t_mean = t_hom - 0.55 * med.inv_FS - 0.69 * med.one_m_ehat
        a_mean = a_hom - 0.476 * med.inv_FS
        s_t = 1.0 / (-2.5 + 1.25 * ly)
        s_a = 1.0 / (-0.82 + 0.79 * ly)
        rho = 0.784 - 0.023 * ly
    else:
        t_mean, a_mean = t_hom, a_hom
        s_t = 1.0 / (-1.4 + 1.26 * ly)
        s_a = 1.0 / (-0.58 + 0.86 * ly)
        rho = 0.705 - 0.023 * ly
    # Geant4 GFlash clamps: positive means and widths <= 0.5 (formulas diverge below ~1 GeV).
    mu_t = math.log(max(t_mean, 1.0))
    mu_a = math.log(max(a_mean, 1.1))
    s_t = min(max(s_t, 0.0), 0.5) if s_t > 0 else 0.5
    s_a = min(max(s_a, 0.0), 0.5) if s_a > 0 else 0.5
    return mu_t, mu_a, s_t, s_a, min(max(rho, -1.0), 1.0)


def n_spots(energy: float, med: _Medium) -> int:
    """Number of spots: ``10.3/c_S E^0.959`` (sampling) or ``93 ln Z E^0.876`` (homogeneous)."""
    if med.sampling:
        n = 10.3 / med.c_S * energy ** 0.959
    else:
        n = 93.0 * math.log(med.Z) * energy ** 0.876
    return max(round(n), 1)


def core_radius(tau: np.ndarray, energy: float, med: _Medium) -> np.ndarray:
    """GP core radius ``R_C(tau)`` in Moliere radii, with the sampling correction."""
    r_c = (0.1162 - 0.000381 * med.Z) * tau
    r_c += 0.0251 + 0.00319 * math.log(energy) - 0.0203 * med.one_m_ehat
    if med.inv_FS:
        r_c += (0.0397 * med.inv_FS) * np.exp(-tau)
    return np.maximum(r_c, 1e-3, out=r_c)


def tail_radius(tau: np.ndarray, energy: float, med: _Medium) -> np.ndarray:
    """GP tail radius ``R_T(tau)`` in Moliere radii, with the sampling correction (kept at least
    the core radius)."""
    k1 = 0.659 - 0.00309 * med.Z
    k4 = 0.3585 + 0.0412 * math.log(energy)
    d = tau - 0.645
    r_t = np.exp(-2.59 * d)
    r_t += np.exp(k4 * d)
    r_t *= k1
    r_t -= 0.14 * med.one_m_ehat
    if med.inv_FS:
        r_t -= (0.495 * med.inv_FS) * np.exp(-tau)
    return np.maximum(r_t, core_radius(tau, energy, med), out=r_t)


def core_probability(tau: np.ndarray, energy: float, med: _Medium) -> np.ndarray:
    """GP core weight ``p(tau)`` (clipped to [0, 1]), with the sampling correction."""
    z = med.Z
    p1 = 2.632 - 0.00094 * z
    p2 = 0.401 + 0.00187 * z
    p3 = 1.313 - 0.0686 * math.log(energy)
    x = (p2 - tau) * (1.0 / p3)
    p = np.exp(x - np.exp(x))
    p *= p1
    if med.one_m_ehat:
        d = tau - 1.0
        p += med.one_m_ehat * (0.348 - (0.642 * med.inv_FS) * np.exp(-(d * d)))
    return np.clip(p, 0.0, 1.0, out=p)


def radial_parameters(tau: np.ndarray, energy: float, med: _Medium
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GP radial profile at ``tau = t/T``: core radius, tail radius (Moliere radii), core weight."""
    return core_radius(tau, energy, med), tail_radius(tau, energy, med), \
        core_probability(tau, energy, med)


def simulate_event(energy: float, rng: np.random.Generator, med: _Medium,
                   entry_smear_mm: float = 0.0) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """One shower: visible energy per cell (flat, x-major, layer fastest) in GeV, the deposit per
    cell before sampling (GeV), and bookkeeping numbers. ``entry_smear_mm`` > 0: the entry point
    is uniform in a square of that side around the grid centre (drawn after the spot positions,
    so the shower shape about its axis is the same as without smear).

    Spot arrays are float32 (depths, radii, angles: 1e-7 relative precision is far below the
    cell size) for speed; weights and energy sums are float64.
    """
    mu_t, mu_a, s_t, s_a, rho = longitudinal_parameters(energy, med)
    z1, z2 = rng.standard_normal(2)
    a_p, a_m = math.sqrt((1.0 + rho) / 2.0), math.sqrt((1.0 - rho) / 2.0)
    t_max = max(math.exp(mu_t + s_t * (a_p * z1 + a_m * z2)), 1.0)
    alpha = max(math.exp(mu_a + s_a * (a_p * z1 - a_m * z2)), 1.1)
    beta = (alpha - 1.0) / t_max
    z = med.Z
    t_s = t_max * (0.698 + 0.00212 * z)
    alpha_s = max(alpha * (0.639 + 0.00334 * z), 1.1)
    beta_s = (alpha_s - 1.0) / t_s

    n = n_spots(energy, med)
    t = rng.standard_gamma(alpha_s, n, dtype=np.float32)
    t *= 1.0 / beta_s
    u = rng.random((3, n), dtype=np.float32)
    # weight = energy profile / spot profile (Gamma pdf ratio; constants cancel on normalising)
    logw = np.log(t)
    logw *= alpha - alpha_s
    logw -= (beta - beta_s) * t
    logw -= logw.max()
    w = np.exp(logw).astype(np.float64)
    w *= energy / w.sum()

    # radial parameters tabulated per event on the depth grid (bins of <= depth/1024 X0: R_C,
    # R_T and p change by < 0.3% across a bin), looked up per spot
    b = med.depth_bin(t)
    tau_grid = med.bin_mid * np.float32(1.0 / t_max)
    core = u[0] < core_probability(tau_grid, energy, med)[b]
    radius = np.where(core, core_radius(tau_grid, energy, med)[b],
                      tail_radius(tau_grid, energy, med)[b])
    u1 = u[1]
    radius *= np.sqrt(u1 / (1.0 - u1))  # Moliere radii
    within_1rm = float(w[radius < 1.0].sum())

    layer = med.layer_of(t, b)
    inside_z = layer < med.nl
    r_mm = radius * med.rm32[layer]
    r_mm *= med.inv_cell
    phi = u[2] * np.float32(2.0 * math.pi)
    fx = np.cos(phi)
    fx *= r_mm
    x0 = y0 = 0.0
    if entry_smear_mm > 0.0:
        x0, y0 = (rng.random(2) - 0.5) * (entry_smear_mm * med.inv_cell)
    fx += 0.5 * med.nx + x0
    fy = np.sin(phi)
    fy *= r_mm
    fy += 0.5 * med.ny + y0
    ix = np.floor(fx).astype(np.intp)
    iy = np.floor(fy).astype(np.intp)
    inside = inside_z & (ix >= 0) & (ix < med.nx) & (iy >= 0) & (iy < med.ny)
    flat = ix
    flat *= med.ny
    flat += iy
    flat *= med.nl
    flat += layer
    n_cells = med.nx * med.ny * med.nl
    flat[~inside] = n_cells  # one extra bin collects the leakage
    dep = np.bincount(flat, weights=w, minlength=n_cells + 1)
    leak_back = float(w[~inside_z].sum())
    leak_side = max(float(dep[n_cells]) - leak_back, 0.0)
    dep = dep[:n_cells]
    deposited = float(dep.sum())

    nz = np.flatnonzero(dep)
    lay = nz % med.nl
    vis = np.zeros(n_cells)
    vis[nz] = med.fc2[lay] * rng.standard_gamma(dep[nz] / med.c2[lay])
    book = {"T": t_max, "alpha": alpha, "n_spots": float(n), "deposited": deposited,
            "leak_back": leak_back, "leak_side": leak_side, "within_1rm": within_1rm}
    return vis, dep, book
