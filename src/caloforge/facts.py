"""Facts of the 3DGAN set-up shared by several layers, each defined once (bottom layer: no
imports).

- :data:`LATENT_DIM`: size of the generator's latent input ``z``.
- :data:`IMAGE_SHAPE`: one shower, (x, y, z) cells, the layer (beam) axis last.
- :data:`TRAINED_ENERGY_RANGE_GEV`: the primary-energy range of the 3DGAN training data (GeV),
  the range the shipped generator was trained on; where a model's own range is known (its
  manifest or model card) that one is used instead.

The 3DGAN metric's energy bins are the metric's own fact:
:data:`caloforge.physics.shape_metric.DEFAULT_BINS`.
"""

LATENT_DIM = 200
IMAGE_SHAPE = (25, 25, 25)
TRAINED_ENERGY_RANGE_GEV: tuple[float, float] = (2.0, 500.0)

__all__ = ["IMAGE_SHAPE", "LATENT_DIM", "TRAINED_ENERGY_RANGE_GEV"]
