"""A cheap analytic toy shower generator for tests and benchmarks of the validation code.

Not physics: a Gamma-function longitudinal profile (shape of Grindhammer-Peters, NIM A290
(1990) 469, with made-up parameters), Cauchy-like transverse profiles and multiplicative Gamma
cell noise. Deterministic for a given seed. Use :func:`caloforge.mc.simulate` for real showers.
"""

from __future__ import annotations

import numpy as np


def toy_showers(energies: np.ndarray, seed: int = 0, grid: tuple[int, int, int] = (25, 25, 25),
                sampling_fraction: float = 0.02, noise: float = 0.3) -> np.ndarray:
    """Toy showers ``(N, X, Y, Z)`` float32 GeV for primary ``energies`` (N,) GeV."""
    rng = np.random.default_rng(seed)
    e = np.asarray(energies, dtype=np.float64).reshape(-1)
    n = e.size
    nx, ny, nz = grid
    t = np.arange(nz) + 0.5
    tmax = np.log(e / 0.01) * 0.35 * np.exp(0.08 * rng.standard_normal(n))   # layers
    alpha = 3.0 + 0.1 * rng.standard_normal(n)
    beta = (alpha - 1.0) / tmax
    lz = (alpha[:, None] - 1) * np.log(beta[:, None] * t) - beta[:, None] * t
    fz = np.exp(lz - lz.max(axis=1, keepdims=True))
    fz /= fz.sum(axis=1, keepdims=True)

    def transverse(m: int) -> np.ndarray:
        c = (m - 1) / 2.0 + 0.3 * rng.standard_normal(n)
        w = 1.2 * np.exp(0.05 * rng.standard_normal(n))
        u = np.arange(m)[None, :] - c[:, None]
        f = 1.0 / (1.0 + (u / w[:, None]) ** 2) ** 2
        return f / f.sum(axis=1, keepdims=True)

    fx, fy = transverse(nx), transverse(ny)
    scale = (e * sampling_fraction * np.exp(0.02 * rng.standard_normal(n))).astype(np.float32)
    img = np.einsum("nx,ny->nxy", fx.astype(np.float32), fy.astype(np.float32))
    img = img[:, :, :, None] * fz.astype(np.float32)[:, None, None, :]
    img *= scale[:, None, None, None]
    if noise > 0:
        k = 1.0 / noise**2
        img *= rng.gamma(k, 1.0 / k, size=img.shape).astype(np.float32)
    img[img < 1e-6] = 0.0
    return img
