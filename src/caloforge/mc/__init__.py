"""GFlash (Grindhammer–Peters) parametrized electromagnetic shower Monte Carlo.

Public API (GeV everywhere):

* :func:`simulate` ``(energies, seed=0, detector=None, **options) -> (images, energies)`` --
  images float32 ``(N, nx, ny, n_layers)`` of visible (active-layer) energy, layer axis last;
* :func:`sample_energies` ``(n, energy_range=(2, 500) | energies=array, seed=0)``;
* :func:`simulate_to_file` -- streaming, atomic HDF5 production with a progress bar.

Event ``i`` uses its own random stream (``SeedSequence([seed, i])``), so the same seed gives
bit-identical showers whatever the chunk size, and a chunk starting at event ``k`` can be
simulated alone with ``first_event=k``. The model and its formulas: :mod:`caloforge.mc.gflash`
and ``docs/mc.md``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from caloforge.detector import Calorimeter, clic_ecal
from caloforge.errors import UserError
from caloforge.facts import TRAINED_ENERGY_RANGE_GEV
from caloforge.mc.gflash import ENERGY_STREAM, _Medium, event_rng, simulate_event
from caloforge.resources import check_memory

#: Primary energies (GeV) for which the GFlash parametrisation is used and validated. Below ~1 GeV
#: the fitted widths diverge (ln y -> 2); above 1 TeV the fits are extrapolated.
SUPPORTED_RANGE = (1.0, 1000.0)
GENERATOR = "caloforge-mc-gflash"
ENERGY_BLOCK = 1024
_MEDIUM_CACHE: dict[Calorimeter, _Medium] = {}
_OPTIONS = ("return_bookkeeping", "first_event", "entry_smear_mm")


def check_energies(energies: Any, what: str = "energies") -> np.ndarray:
    """Return ``energies`` as float64 (N,), or raise :class:`UserError` naming ``what``.

    Energies must be finite and inside :data:`SUPPORTED_RANGE` (GeV).
    """
    try:
        e = np.asarray(energies, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise UserError(f"{what}: not numbers") from None
    bad = ~np.isfinite(e)
    if bad.any():
        raise UserError(f"{what}: {int(bad.sum())} value(s) are NaN or infinite")
    lo, hi = SUPPORTED_RANGE
    out = (e < lo) | (e > hi)
    if out.any():
        v = e[np.argmax(out)]
        raise UserError(f"{what}: {v:g} GeV is outside the supported range {lo:g}-{hi:g} GeV")
    return e


#: Largest seed: seeds are unsigned 64-bit words (SeedSequence entropy, HDF5 attribute).
SEED_MAX = 2**64 - 1


def _check_seed(seed: Any) -> int:
    if (isinstance(seed, bool) or not isinstance(seed, int | np.integer)
            or not 0 <= int(seed) <= SEED_MAX):
        raise UserError(f"seed: expected an integer in 0..2**64-1, got {seed!r}")
    return int(seed)


def _bytes_per_event(det: Calorimeter, bookkeeping: bool) -> int:
    """Bytes :func:`simulate` holds per event: the float32 image, float64 bookkeeping."""
    cells = 1
    for g in det.grid:
        cells *= int(g)
    return 4 * cells + 8 * (8 + (det.n_layers if bookkeeping else 0))


def _medium(det: Calorimeter) -> _Medium:
    med = _MEDIUM_CACHE.get(det)
    if med is None:
        med = _MEDIUM_CACHE[det] = _Medium.of(det)
    return med


def simulate(
    energies: np.ndarray,
    seed: int = 0,
    detector: Calorimeter | None = None,
    **options: Any,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Simulate electron showers of the given primary ``energies`` (GeV).

    Returns ``(images, energies)``: images float32 ``(N, nx, ny, n_layers)`` visible energy in GeV
    (axes x, y, layer), energies float64 ``(N,)`` GeV.

    Options:
      ``first_event`` (int, default 0): global index of the first event (streams use it so a
      chunk equals the same events of a longer run);
      ``entry_smear_mm`` (float, default 0): entry point uniform in a square of this side (mm)
      around the grid centre instead of exactly at the centre (incidence stays normal);
      ``return_bookkeeping`` (bool): also return a dict of per-event arrays (GeV unless noted):
      ``deposited`` (inside the grid), ``leak_back``, ``leak_side`` (their sum is E),
      ``visible`` (= image sum), ``invisible`` (``deposited - visible``: absorbed in the passive
      material, so ``visible + invisible + leak_back + leak_side = E``), ``expected_visible``
      (``sum_l f_l dE_l``), ``within_1rm`` (energy within one Moliere radius of the axis, any
      depth), ``layer_deposit`` (N, n_layers),
      ``T`` (shower maximum, X0), ``alpha``, ``n_spots``.
    """
    unknown = set(options) - set(_OPTIONS)
    if unknown:
        raise TypeError(f"simulate() got unknown options {sorted(unknown)}")
    e = check_energies(energies).copy()
    seed = _check_seed(seed)
    first = options.get("first_event", 0)
    if isinstance(first, bool) or not isinstance(first, int | np.integer) or first < 0:
        raise UserError(f"first_event: expected a non-negative integer, got {first!r}")
    first = int(first)
    smear = float(options.get("entry_smear_mm", 0.0))
    if not (np.isfinite(smear) and smear >= 0.0):
        raise UserError(f"entry_smear_mm: expected a non-negative length in mm, got {smear!r}")
    det = detector if detector is not None else clic_ecal()
    med = _medium(det)
    n = e.size
    grid = det.grid
    check_memory(_bytes_per_event(det, bool(options.get("return_bookkeeping", False))) * n,
                 f"simulate {n} events at once")
    images = np.empty((n, *grid), dtype=np.float32)
    flat = images.reshape(n, int(np.prod(grid)))
    want_book = bool(options.get("return_bookkeeping", False))
    keys = ("T", "alpha", "n_spots", "deposited", "leak_back", "leak_side", "within_1rm")
    book = {k: np.empty(n) for k in keys}
    layer_dep = np.empty((n, det.n_layers)) if want_book else None
    for i in range(n):
        vis, dep, b = simulate_event(float(e[i]), event_rng(seed, first + i), med, smear)
        flat[i] = vis
        if want_book:
            for k in keys:
                book[k][i] = b[k]
            assert layer_dep is not None
            layer_dep[i] = dep.reshape(-1, det.n_layers).sum(axis=0)
    if not want_book:
        return images, e
    assert layer_dep is not None
    book["layer_deposit"] = layer_dep
    book["visible"] = flat.sum(axis=1, dtype=np.float64)
    book["invisible"] = book["deposited"] - book["visible"]
    book["expected_visible"] = det.expected_visible(layer_dep)
    return images, e, book


def sample_energies(
    n: int,
    energy_range: tuple[float, float] | None = None,
    energies: np.ndarray | None = None,
    seed: int = 0,
    first_event: int = 0,
) -> np.ndarray:
    """Primary energies (GeV, float64) of events ``first_event .. first_event + n - 1``.

    ``energies`` given: cycled over the events. Otherwise uniform in ``energy_range``
    (default 2-500 GeV, the 3DGAN range), drawn per block of 1024 events from their own
    stream, so any slice of a production is reproducible on its own.
    """
    if n < 0:
        raise UserError(f"number of events must be positive, got {n}")
    seed = _check_seed(seed)
    if energies is not None:
        values = check_energies(energies, "energies")
        if values.size == 0:
            raise UserError("energies: no energy given")
        return values[(np.arange(first_event, first_event + n)) % values.size].copy()
    lo, hi = TRAINED_ENERGY_RANGE_GEV if energy_range is None else (float(energy_range[0]),
                                                                     float(energy_range[1]))
    check_energies([lo, hi], "energy_range")
    if not lo < hi:
        raise UserError(f"energy_range: LOW ({lo:g}) must be below HIGH ({hi:g}) GeV")
    out = np.empty(n)
    stop = first_event + n
    b0, b1 = first_event // ENERGY_BLOCK, (stop - 1) // ENERGY_BLOCK if n else -1
    for b in range(b0, b1 + 1):
        rng = np.random.default_rng(np.random.SeedSequence([seed, b], spawn_key=(ENERGY_STREAM,)))
        block = lo + (hi - lo) * rng.random(ENERGY_BLOCK)
        s, t = max(first_event, b * ENERGY_BLOCK), min(stop, (b + 1) * ENERGY_BLOCK)
        out[s - first_event:t - first_event] = block[s - b * ENERGY_BLOCK:t - b * ENERGY_BLOCK]
    return out


def simulate_to_file(
    path: str | os.PathLike[str],
    n_events: int,
    energy_range: tuple[float, float] | None = None,
    energies: np.ndarray | None = None,
    seed: int = 0,
    chunk_size: int = 1000,
    progress: bool = True,
    layout: str = "3dgan",
    detector: Calorimeter | None = None,
) -> dict[str, Any]:
    """Simulate ``n_events`` showers into an HDF5 file, streaming ``chunk_size`` events at a time.

    The file is written atomically through :class:`caloforge.data.ShowerWriter` (an interrupted
    run leaves no file) in ``layout`` (``"3dgan"`` or ``"calochallenge"``), with attributes
    ``units``, ``detector`` (``Calorimeter.to_dict()``), ``seed``, ``generator``,
    ``energy_spectrum`` and ``caloforge_version``. The output does not depend on ``chunk_size``.
    Returns a dict: ``path``, ``n_events``, ``seconds``, ``showers_per_s``, ``energy_min/max``,
    ``mean_visible_fraction`` (mean of E_vis/E).
    """
    from tqdm import tqdm

    from caloforge.data import ShowerWriter

    if n_events <= 0:
        raise UserError(f"{path}: number of events must be positive, got {n_events}")
    if chunk_size <= 0:
        raise UserError(f"{path}: chunk size must be positive, got {chunk_size}")
    seed = _check_seed(seed)
    det = detector if detector is not None else clic_ecal()
    block = min(chunk_size, n_events)
    # images + the writer's float32 copy + energies, per block
    check_memory(block * (2 * _bytes_per_event(det, False) + 16), f"{path}: chunk size {block}")
    # validate the energy specification before creating anything
    sample_energies(1, energy_range=energy_range, energies=energies, seed=seed)
    if energies is not None:
        values = np.ravel(np.asarray(energies, dtype=np.float64))
        spectrum: dict[str, Any] = (
            {"energies_GeV": [float(v) for v in values]} if values.size <= 256  # HDF5 attrs < 64 kB
            else {"energies_GeV_cycled": int(values.size), "min": float(values.min()),
                  "max": float(values.max())})
    else:
        lo, hi = energy_range if energy_range is not None else TRAINED_ENERGY_RANGE_GEV
        spectrum = {"uniform_GeV": [float(lo), float(hi)]}
    attrs = {
        "units": "MeV" if layout == "calochallenge" else "GeV",
        "generator": GENERATOR, "seed": seed, "detector": det.to_dict(),
        "energy_spectrum": spectrum, "particle": "e-", "incidence": "normal, grid centre",
    }
    start = time.perf_counter()
    frac_sum = 0.0
    e_min, e_max = np.inf, -np.inf
    with ShowerWriter(path, grid=det.grid, layout=layout, attrs=attrs) as writer, tqdm(
        total=n_events, unit="shower", disable=not progress, desc="simulate", leave=False
    ) as bar:
        for lo_ev in range(0, n_events, chunk_size):
            n = min(chunk_size, n_events - lo_ev)
            e = sample_energies(n, energy_range, energies, seed, first_event=lo_ev)
            images, e = simulate(e, seed=seed, detector=det, first_event=lo_ev)
            writer.append(images, e)
            frac_sum += float((images.reshape(n, -1).sum(axis=1, dtype=np.float64) / e).sum())
            e_min, e_max = min(e_min, float(e.min())), max(e_max, float(e.max()))
            bar.update(n)
    seconds = time.perf_counter() - start
    return {"path": str(path), "n_events": n_events, "layout": layout, "seed": seed,
            "seconds": seconds, "showers_per_s": n_events / seconds if seconds > 0 else float("inf"),
            "energy_min": e_min, "energy_max": e_max,
            "mean_visible_fraction": frac_sum / n_events, "detector": det.name}


__all__ = ["GENERATOR", "SUPPORTED_RANGE", "check_energies", "sample_energies", "simulate",
           "simulate_to_file"]
