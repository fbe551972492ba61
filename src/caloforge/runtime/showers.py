"""What the runtime guarantees of every shower it returns or writes, whatever the model.

:func:`finish_showers` runs on every block of generated showers, in place: a model that outputs
NaN, infinity or a negative cell energy is an error naming the model (nothing is written), and
cells below the model's cell threshold become exact zeros (the threshold comes from the model's
manifest field ``cell_threshold_gev``, else its model card, else the 3DGAN's 1e-6 GeV,
:data:`caloforge.facts.CELL_THRESHOLD_GEV`; ``threshold`` overrides it).
"""

from __future__ import annotations

import math

import numpy as np

from caloforge.errors import UserError


def check_threshold(threshold: float | None, what: str = "threshold") -> float | None:
    """``None`` or a finite cell threshold in [0, 1) GeV."""
    if threshold is None:
        return None
    t = float(threshold)
    if not math.isfinite(t) or not 0.0 <= t < 1.0:
        raise UserError(f"{what} {threshold!r}: expected a cell threshold in GeV, 0 <= t < 1")
    return t


def finish_showers(images: np.ndarray, threshold_gev: float, model: str) -> np.ndarray:
    """Check ``images`` (n, ...) GeV and zero the cells below ``threshold_gev``, in place.

    Raises UserError ``"<model>: the model produced ..."`` on NaN, infinite or negative cells."""
    if images.size == 0:
        return images
    lo, hi = float(images.min()), float(images.max())  # NaN propagates through both
    if not (math.isfinite(lo) and math.isfinite(hi)):
        bad = int(np.count_nonzero(~np.isfinite(images)))
        raise UserError(f"{model}: the model produced {bad} NaN or infinite cell energies: "
                        "broken model or an energy far outside what it can generate; nothing "
                        "written")
    if lo < 0.0:
        bad = int(np.count_nonzero(images < 0))
        raise UserError(f"{model}: the model produced {bad} negative cell energies (down to "
                        f"{lo:.3g} GeV): not a valid shower generator; nothing written")
    if threshold_gev > 0.0:
        np.copyto(images, np.float32(0.0), where=images < np.float32(threshold_gev))
    return images


__all__ = ["check_threshold", "finish_showers"]
