"""Sizes and steps of ``caloforge demo``: the default (a person, ~5-8 min on 2 cores) and
``--quick`` (CI, about a minute). Every knob is a field of :class:`DemoSettings`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from caloforge.errors import UserError
from caloforge.facts import TRAINED_ENERGY_RANGE_GEV
from caloforge.workflows.objective import BIN_ENERGIES_GEV

#: 3DGAN metric energy bins (GeV; caloforge.physics.shape_metric.DEFAULT_BINS).
BIN_CENTRES_GEV = BIN_ENERGIES_GEV
#: Reference energies are drawn uniformly within +- this of a bin centre: inside the metric's
#: +- 5 GeV window with a margin, so float rounding never moves an event out of its bin.
ENERGY_HALF_WINDOW_GEV = 4.5
#: The metric skips bins with fewer events than this (physics.DEFAULT_MIN_EVENTS).
MIN_EVENTS_PER_BIN = 20


@dataclass(frozen=True)
class DemoSettings:
    """Everything that sets the demo's sizes. Energies in GeV, times in seconds.

    ``n_events``: MC reference = MC floor = each GAN sample (cycled over the 7 metric bins).
    ``tune_events``: reference events the tuner's metric uses per trial (first N of the
    reference). ``gen_probe_s``: seconds to probe stream layouts before generating (0: a fixed
    ``streams x 1 thread`` layout). ``bench_*``: the throughput rotation (batch size, rounds,
    seconds per timed sample); ``mc_bench_s``: seconds timing the MC at 100 GeV.
    """

    quick: bool = False
    n_events: int = 3500
    seed: int = 0
    tuning: bool = True
    tune_events: int = 1400
    tune_timeout_s: float = 150.0
    tune_max_trials: int | None = None
    calibration_size: int = 200
    confirm_top: int = 2
    classifier: bool = True
    gen_probe_s: float = 3.0
    bench_batch: int = 32
    bench_rounds: int = 4
    bench_sample_s: float = 0.5
    mc_bench_s: float = 4.0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


QUICK = DemoSettings(
    quick=True, n_events=140, tune_events=140, tune_timeout_s=20.0, tune_max_trials=2,
    calibration_size=32, confirm_top=1, classifier=False, gen_probe_s=0.0, bench_batch=8,
    bench_rounds=2, bench_sample_s=0.12, mc_bench_s=1.0,
)
DEFAULT = DemoSettings()


def settings_for(quick: bool = False, *, n_events: int | None = None, seed: int = 0,
                 skip_tuning: bool = False, **overrides: Any) -> DemoSettings:
    """The quick or default settings with the given changes (``overrides``: any field)."""
    base = QUICK if quick else DEFAULT
    changes: dict[str, Any] = {"seed": int(seed), "tuning": not skip_tuning, **overrides}
    if n_events is not None:
        changes["n_events"] = int(n_events)
        changes.setdefault("tune_events", min(int(n_events), base.tune_events)
                           if not quick else int(n_events))
    unknown = set(changes) - {f.name for f in dataclasses.fields(DemoSettings)}
    if unknown:
        raise TypeError(f"unknown demo settings {sorted(unknown)}")
    s = dataclasses.replace(base, **changes)
    check(s)
    return s


def check(s: DemoSettings) -> None:
    """Raise :class:`UserError` (naming the field) for settings the demo cannot run with."""
    need = MIN_EVENTS_PER_BIN * len(BIN_CENTRES_GEV)
    if s.n_events < need:
        raise UserError(f"n_events {s.n_events}: at least {need} are needed "
                        f"({MIN_EVENTS_PER_BIN} per 3DGAN metric bin x {len(BIN_CENTRES_GEV)} bins)")
    if not need <= s.tune_events <= s.n_events:
        raise UserError(f"tune_events {s.tune_events}: must be between {need} and "
                        f"n_events ({s.n_events})")
    if s.seed < 0:
        raise UserError(f"seed {s.seed}: must be a non-negative integer")
    if not s.tune_timeout_s > 0:  # also NaN
        raise UserError(f"tune_timeout_s {s.tune_timeout_s}: must be positive")
    if s.tune_max_trials is not None and s.tune_max_trials < 1:
        raise UserError(f"tune_max_trials {s.tune_max_trials}: must be >= 1")
    if s.bench_batch < 1 or s.bench_rounds < 1 or not s.bench_sample_s > 0 or s.calibration_size < 1:
        raise UserError("bench_batch, bench_rounds, bench_sample_s, calibration_size: must be "
                        "positive")


def usable_bins(trained_range: tuple[float, float] = TRAINED_ENERGY_RANGE_GEV
                ) -> tuple[float, ...]:
    """The metric bin centres (GeV) inside the generator's trained range."""
    lo, hi = trained_range
    bins = tuple(c for c in BIN_CENTRES_GEV if lo <= c <= hi)
    if not bins:
        raise UserError(f"the model's trained range {lo:g}-{hi:g} GeV holds none of the 3DGAN "
                        f"metric bins {', '.join(f'{c:g}' for c in BIN_CENTRES_GEV)} GeV")
    return bins


def reference_energies(n: int, seed: int,
                       trained_range: tuple[float, float] = TRAINED_ENERGY_RANGE_GEV
                       ) -> np.ndarray:
    """Primary energies (GeV, float64) of the demo's reference sample.

    Event ``i`` belongs to metric bin ``i mod 7`` (50, 100, 200, 250, 300, 400, 500 GeV; only
    the bins inside the GAN's trained range) and its energy is uniform within
    +- :data:`ENERGY_HALF_WINDOW_GEV` of the bin centre, clipped to the trained range (so the
    500 GeV bin is 495.5-500 GeV). Every bin gets ``n // 7`` or ``n // 7 + 1`` events; the
    metric's ``all`` bin is the whole sample.
    """
    bins = np.asarray(usable_bins(trained_range))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 20260]))
    centres = bins[np.arange(n) % bins.size]
    lo = np.maximum(centres - ENERGY_HALF_WINDOW_GEV, trained_range[0])
    hi = np.minimum(centres + ENERGY_HALF_WINDOW_GEV, trained_range[1])
    return lo + (hi - lo) * rng.random(n)
