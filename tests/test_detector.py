"""Detector value objects: numbers computed from the material constants (PDG cross-checks)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from caloforge.detector import (
    LEAD,
    PBWO4,
    SILICON,
    TUNGSTEN,
    Calorimeter,
    Layer,
    Material,
    clic_ecal,
    homogeneous_ecal,
    pb_lar_ecal,
)


def test_material_constants_match_pdg():
    # PDG: W X0 0.350 cm, R_M 0.93 cm; Pb X0 0.561 cm, R_M 1.60 cm; Si X0 9.37 cm, R_M 4.94 cm.
    assert TUNGSTEN.X0_mm == pytest.approx(3.50, rel=0.01)
    assert TUNGSTEN.R_M_mm == pytest.approx(9.3, rel=0.02)
    assert LEAD.X0_mm == pytest.approx(5.61, rel=0.01)
    assert LEAD.R_M_mm == pytest.approx(16.0, rel=0.02)
    assert SILICON.X0_mm == pytest.approx(93.7, rel=0.01)
    assert SILICON.R_M_mm == pytest.approx(49.4, rel=0.02)
    assert PBWO4.X0_mm == pytest.approx(8.9, rel=0.01)
    assert PBWO4.R_M_mm == pytest.approx(20.0, rel=0.03)


def test_critical_energy_formula():
    # 2.66 (X0 Z/A)^1.1 MeV reproduces the PDG E_c of W (7.97 MeV) to ~1%.
    w = dataclasses.replace(TUNGSTEN, E_c=None)
    assert w.critical_energy == pytest.approx(7.97, rel=0.015)


def test_clic_ecal_geometry():
    det = clic_ecal()
    assert det.grid == (25, 25, 25) and det.cell_size_mm == 5.1
    assert det.depth_mm == pytest.approx(17 * 2.9 + 8 * 5.3)
    assert 22.0 < det.depth_x0 < 24.0  # "about 23 X0"
    edges = det.layer_edges_x0
    assert len(edges) == 26 and edges[0] == 0 and all(edges[1:] > edges[:-1])
    # layer thickness in X0 = sum d_i / X0_i (mixture rule is exact for thickness)
    assert edges[1] == pytest.approx(2.4 / TUNGSTEN.X0_mm + 0.5 / SILICON.X0_mm)
    assert edges[-1] - edges[-2] == pytest.approx(4.8 / TUNGSTEN.X0_mm + 0.5 / SILICON.X0_mm)


def test_mixture_rules_first_layer():
    layer = clic_ecal().layers[0]
    mw, ms = 19.3 * 2.4, 2.329 * 0.5
    w_w, w_s = mw / (mw + ms), ms / (mw + ms)
    x0 = 1 / (w_w / 6.76 + w_s / 21.82)
    x0_layer, fs_layer = layer.X0, layer.F_S
    assert x0_layer == pytest.approx(x0)
    rho = (mw + ms) / 2.9
    assert layer.X0_mm == pytest.approx(10 * x0 / rho)
    rm = 21.2 / (w_w * 7.97 / 6.76 + w_s * 40.19 / 21.82)
    assert layer.R_M_mm == pytest.approx(10 * rm / rho)
    assert layer.E_c == pytest.approx(x0 * 21.2 / rm)
    assert fs_layer == pytest.approx(layer.X0_mm / 2.9)
    assert layer.e_hat == pytest.approx(1 / (1 + 0.007 * (74 - 14)))
    f_mip = 0.5 * 2.329 * 1.664 / (0.5 * 2.329 * 1.664 + 2.4 * 19.3 * 1.145)
    assert layer.f_mip == pytest.approx(f_mip)
    assert layer.sampling_fraction == pytest.approx(f_mip * layer.e_hat)
    assert layer.c_S == pytest.approx(0.027 * math.sqrt(0.5 / f_mip))
    # effective values lie between those of the components
    assert TUNGSTEN.X0_mm < layer.X0_mm < SILICON.X0_mm
    assert TUNGSTEN.critical_energy < layer.E_c < SILICON.critical_energy


def test_clic_computed_figures():
    det = clic_ecal()
    s = det.summary()
    assert 3.5 < s["X0_eff_mm"] < 4.5
    assert 9.5 < s["R_M_mm"] < 11.5
    assert 7.9 < s["E_c_MeV"] < 8.5
    assert 0.02 < det.sampling_fraction < 0.03
    f = det.layer_sampling_fraction
    assert f[-1] < f[0]  # thicker absorber at the back: sampled half as much
    assert clic_ecal(si_mm=0.3).sampling_fraction < det.sampling_fraction


def test_to_dict_round_trip_json():
    for det in (clic_ecal(), homogeneous_ecal(), pb_lar_ecal()):
        d = json.loads(json.dumps(det.to_dict()))
        assert Calorimeter.from_dict(d) == det
        assert d["computed"]["depth_X0"] == pytest.approx(det.depth_x0, rel=1e-4)


def test_homogeneous_and_pb_lar():
    h = homogeneous_ecal()
    assert h.sampling_fraction == 1.0 and h.layers[0].e_hat == 1.0
    assert math.isinf(h.layers[0].F_S)
    assert h.depth_x0 == pytest.approx(25.0)
    p = pb_lar_ecal()
    assert 0.1 < p.sampling_fraction < 0.25
    assert 15 < p.depth_x0 < 22


def test_frozen_and_validated():
    det = clic_ecal()
    with pytest.raises(dataclasses.FrozenInstanceError):
        det.cell_size_mm = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        Layer(active=SILICON, active_mm=0.0)
    with pytest.raises(ValueError):
        Calorimeter("empty", 5.0, (5, 5), ())
    custom = Material("Cu", Z=29, A=63.546, density=8.96, X0=12.86, dedx_mip=1.403)
    # computed from the fit when E_c is not given: 2.66 (X0 Z/A)^1.1 = 18.6 MeV for copper,
    # within 5% of the PDG value (19.42 MeV for electrons)
    assert custom.critical_energy == pytest.approx(2.66 * (12.86 * 29 / 63.546) ** 1.1, rel=1e-9)
    assert custom.critical_energy == pytest.approx(19.42, rel=0.05)
