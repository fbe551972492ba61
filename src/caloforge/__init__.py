"""caloforge: fast calorimeter shower simulation without making it wrong.

Stages (one sub-package each): ``mc`` (GFlash Monte Carlo), ``data`` (HDF5 layouts),
``physics`` (observables, metrics, plots), ``gan`` (conditional 3D GAN), ``runtime``
(OpenVINO inference, multistream), ``quant`` (accuracy-driven mixed precision tuning),
``scale`` (Dask productions). The command line (``caloforge ...``) is a thin shell over them.
"""

from caloforge.errors import CaloforgeError, UserError

__version__ = "0.1.0"

__all__ = ["CaloforgeError", "UserError", "__version__"]
