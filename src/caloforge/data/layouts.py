"""Names, units and conventions of the supported HDF5 layouts."""

from __future__ import annotations

LAYOUT_3DGAN = "3dgan"
LAYOUT_CALOCHALLENGE = "calochallenge"
LAYOUTS = (LAYOUT_3DGAN, LAYOUT_CALOCHALLENGE)

# 3DGAN (Khattak et al., EPJC 82 (2022) 386): GeV, images (N, x, y, z), z = layer.
KEY_ECAL = "ECAL"
KEY_ENERGY = "energy"
KEY_TARGET = "target"  # older files: primary energy in target[:, 1]

# CaloChallenge 2022: MeV, flattened showers.
KEY_SHOWERS = "showers"
KEY_INCIDENT = "incident_energies"
MEV_PER_GEV = 1000.0

DEFAULT_GRID = (25, 25, 25)
