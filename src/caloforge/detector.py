"""Calorimeter geometry and materials: frozen value objects, no I/O.

A :class:`Calorimeter` is a grid of square cells (transverse) times a stack of
:class:`Layer` s (longitudinal). Each layer is an optional passive absorber slab followed by an
active (read-out) slab. Every derived number the shower Monte Carlo needs -- effective radiation
length, Moliere radius, critical energy, sampling fraction, the GFlash ``F_S`` and ``e_hat`` --
is *computed* from the material constants with the mixture rules of Grindhammer & Peters
(hep-ex/0001020, sec. 2.3), never hard-coded, so a user can describe another calorimeter with
:func:`homogeneous_ecal`, :func:`sampling_ecal` or by building the dataclasses directly.

Units: lengths in mm (geometry), radiation lengths of materials in g/cm2 (as the PDG tables),
energies in MeV for material constants, densities in g/cm3.

Formulas (Grindhammer, Rudowicz, Peters, NIM A290 (1990) 469; hep-ex/0001020):

* critical energy ``E_c = 2.66 (X0 Z / A)^1.1`` MeV (X0 in g/cm2) when not given;
* Moliere radius ``R_M = X0 * 21.2 MeV / E_c``;
* mixtures with mass weights ``w_i``: ``1/X0_eff = sum w_i / X0_i``,
  ``1/R_M_eff = sum w_i (E_c_i / X0_i) / 21.2 MeV``, hence ``E_c_eff = X0_eff sum w_i E_c_i/X0_i``,
  ``Z_eff = sum w_i Z_i``;
* sampling: ``F_S = X0_eff / (d_abs + d_act)``, ``e_hat = 1 / (1 + 0.007 (Z_abs - Z_act))``
  (e/mip ratio), visible fraction for electrons ``f = f_mip * e_hat`` with the minimum-ionising
  sampling fraction ``f_mip = d_act (dE/dx)_act / sum_i d_i (dE/dx)_i``;
* stochastic term of a sampling layer (Amaldi, Phys. Scripta 23 (1981) 409):
  ``c_S = 2.7% sqrt(d_act[mm] / f_mip)`` (GeV^1/2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ES_MEV = 21.2  # scale energy of multiple scattering (Moliere radius), MeV


@dataclass(frozen=True)
class Material:
    """A pure material or compound.

    ``X0`` radiation length in g/cm2, ``density`` g/cm3, ``E_c`` critical energy in MeV (``None``:
    computed as ``2.66 (X0 Z/A)^1.1`` MeV), ``dedx_mip`` minimum ionisation loss in MeV cm2/g.
    """

    name: str
    Z: float
    A: float
    density: float
    X0: float
    E_c: float | None = None
    dedx_mip: float = 1.5

    @property
    def critical_energy(self) -> float:
        """Critical energy in MeV (given, or from the Grindhammer–Peters fit)."""
        if self.E_c is not None:
            return float(self.E_c)
        return 2.66 * (self.X0 * self.Z / self.A) ** 1.1

    @property
    def X0_mm(self) -> float:
        """Radiation length in mm."""
        return 10.0 * self.X0 / self.density

    @property
    def R_M(self) -> float:
        """Moliere radius in g/cm2 (``X0 * 21.2 MeV / E_c``)."""
        return self.X0 * ES_MEV / self.critical_energy

    @property
    def R_M_mm(self) -> float:
        """Moliere radius in mm."""
        return 10.0 * self.R_M / self.density

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "Z": self.Z, "A": self.A, "density_g_cm3": self.density,
                "X0_g_cm2": self.X0, "E_c_MeV": self.critical_energy,
                "dedx_mip_MeV_cm2_g": self.dedx_mip}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Material:
        return cls(name=d["name"], Z=d["Z"], A=d["A"], density=d["density_g_cm3"], X0=d["X0_g_cm2"],
                   E_c=d.get("E_c_MeV"), dedx_mip=d.get("dedx_mip_MeV_cm2_g", 1.5))


# PDG "Atomic and nuclear properties of materials" (pdg.lbl.gov/AtomicNuclearProperties).
TUNGSTEN = Material("W", Z=74, A=183.84, density=19.3, X0=6.76, E_c=7.97, dedx_mip=1.145)
SILICON = Material("Si", Z=14, A=28.0855, density=2.329, X0=21.82, E_c=40.19, dedx_mip=1.664)
LEAD = Material("Pb", Z=82, A=207.2, density=11.35, X0=6.37, E_c=7.43, dedx_mip=1.122)
LIQUID_ARGON = Material("LAr", Z=18, A=39.948, density=1.396, X0=19.55, E_c=32.84, dedx_mip=1.508)
# PbWO4 as one compound: Z and A are mass-weighted averages (PDG: X0 0.89 cm, R_M 2.00 cm).
PBWO4 = Material("PbWO4", Z=68.4, A=170.8, density=8.30, X0=7.39, E_c=9.64, dedx_mip=1.255)


@dataclass(frozen=True)
class Layer:
    """One longitudinal layer: ``absorber`` (may be ``None``) then the ``active`` read-out slab.

    Thicknesses in mm. ``stochastic_term`` (GeV^1/2) overrides the computed one: Amaldi's
    ``2.7% sqrt(d_act/f_mip)`` for a sampling layer, 3% for a homogeneous one (photo-statistics).
    """

    active: Material
    active_mm: float
    absorber: Material | None = None
    absorber_mm: float = 0.0
    stochastic_term: float | None = None

    def __post_init__(self) -> None:
        if self.active_mm <= 0 or self.absorber_mm < 0:
            raise ValueError("layer thicknesses must be positive")
        if self.absorber is None and self.absorber_mm:
            raise ValueError("absorber thickness without absorber material")

    # -- composition ---------------------------------------------------------------
    @property
    def homogeneous(self) -> bool:
        return self.absorber is None or self.absorber_mm == 0.0

    def _slabs(self) -> list[tuple[Material, float]]:
        slabs = [(self.active, self.active_mm)]
        if not self.homogeneous:
            assert self.absorber is not None
            slabs.insert(0, (self.absorber, self.absorber_mm))
        return slabs

    @property
    def thickness_mm(self) -> float:
        return self.active_mm + self.absorber_mm

    def mass_weights(self) -> list[tuple[Material, float]]:
        """``(material, w_i)`` with ``w_i`` the mass fraction of the layer."""
        masses = [(m, m.density * d) for m, d in self._slabs()]
        total = sum(x for _, x in masses)
        return [(m, x / total) for m, x in masses]

    @property
    def density(self) -> float:
        """Mean density in g/cm3."""
        return sum(m.density * d for m, d in self._slabs()) / self.thickness_mm

    @property
    def X0(self) -> float:
        """Effective radiation length in g/cm2: ``1/X0 = sum w_i / X0_i``."""
        return 1.0 / sum(w / m.X0 for m, w in self.mass_weights())

    @property
    def X0_mm(self) -> float:
        return 10.0 * self.X0 / self.density

    @property
    def thickness_x0(self) -> float:
        """Layer thickness in radiation lengths (= ``sum d_i / X0_i``)."""
        return self.thickness_mm / self.X0_mm

    @property
    def Z(self) -> float:
        """Effective atomic number ``sum w_i Z_i``."""
        return sum(w * m.Z for m, w in self.mass_weights())

    @property
    def R_M(self) -> float:
        """Effective Moliere radius in g/cm2: ``1/R_M = sum w_i (E_c_i/X0_i) / 21.2 MeV``."""
        return ES_MEV / sum(w * m.critical_energy / m.X0 for m, w in self.mass_weights())

    @property
    def R_M_mm(self) -> float:
        return 10.0 * self.R_M / self.density

    @property
    def E_c(self) -> float:
        """Effective critical energy in MeV: ``X0_eff * sum w_i E_c_i / X0_i``."""
        return self.X0 * ES_MEV / self.R_M

    # -- sampling ------------------------------------------------------------------
    @property
    def f_mip(self) -> float:
        """Fraction of a minimum-ionising particle's loss deposited in the active slab."""
        if self.homogeneous:
            return 1.0
        loss = [m.dedx_mip * m.density * d for m, d in self._slabs()]
        return loss[-1] / sum(loss)

    @property
    def e_hat(self) -> float:
        """GFlash e/mip ratio ``1/(1 + 0.007 (Z_abs - Z_act))``; 1 for a homogeneous layer."""
        if self.homogeneous:
            return 1.0
        assert self.absorber is not None
        return 1.0 / (1.0 + 0.007 * (self.absorber.Z - self.active.Z))

    @property
    def sampling_fraction(self) -> float:
        """Visible fraction of electromagnetic shower energy: ``f_mip * e_hat``."""
        return self.f_mip * self.e_hat

    @property
    def F_S(self) -> float:
        """GFlash sampling-frequency parameter ``X0_eff / (d_abs + d_act)`` (inf if homogeneous)."""
        return math.inf if self.homogeneous else self.X0_mm / self.thickness_mm

    @property
    def c_S(self) -> float:
        """Stochastic term of the resolution in GeV^1/2 (``sigma/E = c_S / sqrt(E)``)."""
        if self.stochastic_term is not None:
            return float(self.stochastic_term)
        if self.homogeneous:
            return 0.03
        return 0.027 * math.sqrt(self.active_mm / self.f_mip)

    def to_dict(self) -> dict[str, Any]:
        return {
            "absorber": None if self.homogeneous else self.absorber.to_dict(),  # type: ignore[union-attr]
            "absorber_mm": self.absorber_mm,
            "active": self.active.to_dict(),
            "active_mm": self.active_mm,
            "stochastic_term": self.stochastic_term,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Layer:
        absorber = d.get("absorber")
        return cls(active=Material.from_dict(d["active"]), active_mm=d["active_mm"],
                   absorber=Material.from_dict(absorber) if absorber else None,
                   absorber_mm=d.get("absorber_mm", 0.0) if absorber else 0.0,
                   stochastic_term=d.get("stochastic_term"))


@dataclass(frozen=True)
class Calorimeter:
    """A calorimeter: ``n_cells = (nx, ny)`` square cells of ``cell_size_mm`` and a layer stack.

    The beam enters at the transverse centre of the grid, along the layer axis. The shower
    (GFlash) parameters are taken from the first layer's material mix -- the section where
    electromagnetic showers start and, in the CLIC ECAL up to ~200 GeV, reach their maximum --
    see :meth:`shower_medium`; the depth, lateral scale (Moliere radius), sampling fraction and
    stochastic term are then applied layer by layer.
    """

    name: str
    cell_size_mm: float
    n_cells: tuple[int, int]
    layers: tuple[Layer, ...]
    _cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False,
                                   hash=False)

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValueError("a calorimeter needs at least one layer")
        if self.cell_size_mm <= 0 or min(self.n_cells) <= 0:
            raise ValueError("cell size and number of cells must be positive")
        object.__setattr__(self, "n_cells", tuple(int(n) for n in self.n_cells))
        object.__setattr__(self, "layers", tuple(self.layers))

    # -- grid ------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def grid(self) -> tuple[int, int, int]:
        """Image shape ``(nx, ny, n_layers)`` (layer axis last)."""
        return (self.n_cells[0], self.n_cells[1], self.n_layers)

    @property
    def depth_mm(self) -> float:
        return float(sum(layer.thickness_mm for layer in self.layers))

    @property
    def depth_x0(self) -> float:
        return float(self.layer_edges_x0[-1])

    def _arr(self, key: str, fn: Any) -> np.ndarray:
        if key not in self._cache:
            arr = np.array([fn(layer) for layer in self.layers], dtype=np.float64)
            arr.setflags(write=False)
            self._cache[key] = arr
        return self._cache[key]

    @property
    def layer_edges_x0(self) -> np.ndarray:
        """Layer boundaries in radiation lengths from the front face, shape (n_layers + 1,)."""
        if "edges" not in self._cache:
            edges = np.concatenate([[0.0], np.cumsum([la.thickness_x0 for la in self.layers])])
            edges.setflags(write=False)
            self._cache["edges"] = edges
        return self._cache["edges"]

    @property
    def layer_centres_x0(self) -> np.ndarray:
        e = self.layer_edges_x0
        return 0.5 * (e[1:] + e[:-1])

    @property
    def layer_sampling_fraction(self) -> np.ndarray:
        return self._arr("f", lambda la: la.sampling_fraction)

    @property
    def layer_c_S(self) -> np.ndarray:
        return self._arr("cs", lambda la: la.c_S)

    @property
    def layer_R_M_mm(self) -> np.ndarray:
        return self._arr("rm", lambda la: la.R_M_mm)

    # -- whole-stack effective values (mixture over all layers) ----------------------------
    def _mass_weights(self) -> dict[Material, float]:
        masses: dict[Material, float] = {}
        for layer in self.layers:
            for m, d in layer._slabs():
                masses[m] = masses.get(m, 0.0) + m.density * d
        total = sum(masses.values())
        return {m: x / total for m, x in masses.items()}

    @property
    def density(self) -> float:
        return sum(la.density * la.thickness_mm for la in self.layers) / self.depth_mm

    @property
    def X0_eff_mm(self) -> float:
        """Radiation length of the whole stack (mass-weighted mixture), mm."""
        x0 = 1.0 / sum(w / m.X0 for m, w in self._mass_weights().items())
        return 10.0 * x0 / self.density

    @property
    def R_M_mm(self) -> float:
        """Moliere radius of the whole stack (mixture rule), mm."""
        rm = ES_MEV / sum(w * m.critical_energy / m.X0 for m, w in self._mass_weights().items())
        return 10.0 * rm / self.density

    @property
    def E_c(self) -> float:
        """Critical energy of the whole stack in MeV (``X0_eff sum w_i E_c_i / X0_i``)."""
        ws = self._mass_weights().items()
        x0 = 1.0 / sum(w / m.X0 for m, w in ws)
        return x0 * sum(w * m.critical_energy / m.X0 for m, w in ws)

    @property
    def Z_eff(self) -> float:
        return sum(w * m.Z for m, w in self._mass_weights().items())

    @property
    def sampling_fraction(self) -> float:
        """Electron sampling fraction of the first layer (where the shower develops).

        The CLIC ECAL's back section samples half as often, so E_vis/E of a real shower falls
        slowly with energy as the shower moves back; :meth:`expected_visible` gives the exact
        expectation for a given deposit per layer.
        """
        return self.layers[0].sampling_fraction

    def shower_medium(self) -> dict[str, float]:
        """GFlash medium parameters: from the first layer (``Z``, ``E_c`` MeV, ``F_S``, ``e_hat``,
        ``c_S`` GeV^1/2, ``homogeneous``)."""
        first = self.layers[0]
        return {"Z": first.Z, "E_c": first.E_c, "F_S": first.F_S, "e_hat": first.e_hat,
                "c_S": first.c_S, "homogeneous": float(first.homogeneous)}

    def expected_visible(self, deposit_per_layer: np.ndarray) -> np.ndarray:
        """Expected visible energy for deposits (..., n_layers) in GeV: ``sum_l f_l dE_l``."""
        return np.asarray(deposit_per_layer) @ self.layer_sampling_fraction

    def summary(self) -> dict[str, Any]:
        """Computed figures (for docs, ``caloforge info`` and the HDF5 attributes)."""
        first = self.layers[0]
        return {
            "depth_mm": round(self.depth_mm, 4), "depth_X0": round(self.depth_x0, 4),
            "X0_eff_mm": round(self.X0_eff_mm, 4), "R_M_mm": round(self.R_M_mm, 4),
            "E_c_MeV": round(self.E_c, 4), "Z_eff": round(self.Z_eff, 3),
            "sampling_fraction": round(self.sampling_fraction, 6),
            "front_layer": {"X0_mm": round(first.X0_mm, 4), "R_M_mm": round(first.R_M_mm, 4),
                            "E_c_MeV": round(first.E_c, 4), "F_S": round(first.F_S, 4)
                            if not first.homogeneous else None,
                            "e_hat": round(first.e_hat, 4), "f_mip": round(first.f_mip, 6),
                            "c_S": round(first.c_S, 4)},
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description (stored in the HDF5 attributes); inverse: :meth:`from_dict`."""
        return {"name": self.name, "cell_size_mm": self.cell_size_mm, "n_cells": list(self.n_cells),
                "layers": [la.to_dict() for la in self.layers], "computed": self.summary()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calorimeter:
        return cls(name=d["name"], cell_size_mm=d["cell_size_mm"], n_cells=tuple(d["n_cells"]),
                   layers=tuple(Layer.from_dict(x) for x in d["layers"]))


# -------------------------------------------------------------------------- factories
def sampling_ecal(
    name: str,
    absorber: Material,
    active: Material,
    sections: list[tuple[int, float]] | tuple[tuple[int, float], ...],
    active_mm: float,
    cell_size_mm: float,
    n_cells: tuple[int, int] = (25, 25),
) -> Calorimeter:
    """A sampling calorimeter: ``sections`` = ``[(n_layers, absorber_mm), ...]`` front to back."""
    layers = tuple(
        Layer(active=active, active_mm=active_mm, absorber=absorber, absorber_mm=d)
        for n, d in sections for _ in range(n)
    )
    return Calorimeter(name=name, cell_size_mm=cell_size_mm, n_cells=n_cells, layers=layers)


def clic_ecal(si_mm: float = 0.5) -> Calorimeter:
    """The CLIC-style W/Si ECAL of the 3DGAN data: 25x25 cells of 5.1 mm, 25 layers
    (17 x 2.4 mm + 8 x 4.8 mm W), each followed by ``si_mm`` (default 0.5 mm) of silicon; ~23 X0."""
    return sampling_ecal("CLIC W/Si ECAL", TUNGSTEN, SILICON, [(17, 2.4), (8, 4.8)], si_mm, 5.1)


def homogeneous_ecal(material: Material = PBWO4, n_layers: int = 25, layer_mm: float | None = None,
                     cell_size_mm: float = 22.0, n_cells: tuple[int, int] = (25, 25)) -> Calorimeter:
    """A homogeneous calorimeter (default PbWO4, 25 one-X0 "layers" of 22 mm crystals' depth
    segmentation)."""
    d = material.X0_mm if layer_mm is None else layer_mm
    layers = tuple(Layer(active=material, active_mm=d) for _ in range(n_layers))
    return Calorimeter(name=f"homogeneous {material.name}", cell_size_mm=cell_size_mm,
                       n_cells=n_cells, layers=layers)


def pb_lar_ecal() -> Calorimeter:
    """A Pb/LAr sampling ECAL (ATLAS-like: 2 mm Pb + 4 mm LAr, 50 layers, ~19 X0), 25x25 cells of
    10 mm."""
    return sampling_ecal("Pb/LAr ECAL", LEAD, LIQUID_ARGON, [(50, 2.0)], 4.0, 10.0)


__all__ = [
    "LEAD", "LIQUID_ARGON", "PBWO4", "SILICON", "TUNGSTEN", "Calorimeter", "Layer", "Material",
    "clic_ecal", "homogeneous_ecal", "pb_lar_ecal", "sampling_ecal",
]
