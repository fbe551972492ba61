"""Reproducible per-event random inputs: latent noise and sampled primary energies.

Every random number an event needs is a function of ``(seed, event index)`` only: events are
grouped in fixed blocks of :data:`BLOCK_EVENTS`, and block ``k`` draws from its own generator
``numpy.random.default_rng([seed, stream, k])`` (a counter-based scheme: the SeedSequence of
the triple makes blocks statistically independent). Event ``i`` therefore gets the same latent
vector whatever the inference batch size, the number of streams or the order the engine runs
batches in — and any slice ``[start, stop)`` can be regenerated without the events before it.
"""

from __future__ import annotations

import numpy as np

from caloforge.errors import UserError

BLOCK_EVENTS = 1024
_STREAM_LATENT = 0
_STREAM_ENERGY = 1


def _check_seed(seed: int) -> int:
    seed = int(seed)
    if seed < 0:
        raise UserError(f"seed {seed}: must be a non-negative integer")
    return seed


def _blocks(seed: int, stream: int, start: int, stop: int, width: int,
            draw: str) -> np.ndarray:
    if start < 0 or stop < start:
        raise ValueError(f"bad event range [{start}, {stop})")
    n = stop - start
    shape = (n, width) if width else (n,)
    out: np.ndarray = np.empty(shape, dtype=np.float32 if draw == "normal" else np.float64)
    if n == 0:
        return out
    first, last = start // BLOCK_EVENTS, (stop - 1) // BLOCK_EVENTS
    pos = 0
    for k in range(first, last + 1):
        rng = np.random.default_rng([seed, stream, k])
        bshape = (BLOCK_EVENTS, width) if width else (BLOCK_EVENTS,)
        block: np.ndarray
        if draw == "normal":
            block = rng.standard_normal(bshape, dtype=np.float32)
        else:
            block = rng.random(bshape, dtype=np.float64)
        lo = max(start - k * BLOCK_EVENTS, 0)
        hi = min(stop - k * BLOCK_EVENTS, BLOCK_EVENTS)
        out[pos:pos + hi - lo] = block[lo:hi]
        pos += hi - lo
    return out


def latent_noise(seed: int, start: int, stop: int, latent_dim: int = 200) -> np.ndarray:
    """Standard-normal latent vectors for events ``[start, stop)``: float32 ``(n, latent_dim)``."""
    return _blocks(_check_seed(seed), _STREAM_LATENT, int(start), int(stop), int(latent_dim),
                   "normal")


def uniform_energies(seed: int, start: int, stop: int, low: float, high: float) -> np.ndarray:
    """Primary energies uniform in ``[low, high)`` GeV for events ``[start, stop)`` (float64)."""
    u = _blocks(_check_seed(seed), _STREAM_ENERGY, int(start), int(stop), 0, "uniform")
    return low + (high - low) * u


def cycled_energies(values: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Energies ``values`` (GeV) repeated cyclically over events ``[start, stop)``."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    return values[np.arange(start, stop) % values.size]
