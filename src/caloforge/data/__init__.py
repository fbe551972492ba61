"""HDF5 shower data sets: the 3DGAN layout (default) and the CaloChallenge layout.

3DGAN layout: ``ECAL`` float32 (N, X, Y, Z) visible energy per cell in GeV, with the
longitudinal (layer) axis last; ``energy`` float32 (N,) primary energy in GeV (files from the
CERN 3DGAN repositories may carry it as ``target[:, 1]`` instead).
CaloChallenge layout: ``incident_energies`` (N, 1) and ``showers`` (N, n_cells), both in MeV.
"""

from caloforge.data.reader import ShowerFile, open_showers, read_showers
from caloforge.data.writer import ShowerWriter, write_showers

__all__ = ["ShowerFile", "ShowerWriter", "open_showers", "read_showers", "write_showers"]
