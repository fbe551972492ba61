"""Facts of the 3DGAN set-up shared by several layers, each defined once (bottom layer: no
imports).

- :data:`LATENT_DIM`: size of the generator's latent input ``z``.
- :data:`IMAGE_SHAPE`: one shower, (x, y, z) cells, the layer (beam) axis last.
- :data:`TRAINED_ENERGY_RANGE_GEV`: the primary-energy range of the 3DGAN training data (GeV),
  the range the shipped generator was trained on; where a model's own range is known (its
  manifest or model card) that one is used instead.
- :data:`CELL_THRESHOLD_GEV`: the 3DGAN cell threshold (1e-6 GeV = 1 keV): cells below it are
  empty in the training data, and the runtime writes them as exact zeros for a model whose
  manifest / card gives no threshold of its own.
- :data:`MAX_ENERGY_GEV`: the hard ceiling of the primary energy the runtime generates at, even
  when extrapolating: 10 TeV, above the LHC beam energy (6.8 TeV: no single primary of an LHC
  collision carries more), 20x the trained range's top, and above the absorber's LPM energy
  (E_LPM = 7.7 TeV/cm x X0: 2.7 TeV in tungsten, 4.3 TeV in lead; Klein, Rev. Mod. Phys. 71
  (1999) 1501), where
  bremsstrahlung and pair production are suppressed and showers lengthen: physics that neither
  the GFlash training data nor the generator contains.

The 3DGAN metric's energy bins are the metric's own fact:
:data:`caloforge.physics.shape_metric.DEFAULT_BINS`.
"""

LATENT_DIM = 200
IMAGE_SHAPE = (25, 25, 25)
TRAINED_ENERGY_RANGE_GEV: tuple[float, float] = (2.0, 500.0)
CELL_THRESHOLD_GEV = 1e-6
MAX_ENERGY_GEV = 1.0e4

__all__ = ["CELL_THRESHOLD_GEV", "IMAGE_SHAPE", "LATENT_DIM", "MAX_ENERGY_GEV",
           "TRAINED_ENERGY_RANGE_GEV"]
