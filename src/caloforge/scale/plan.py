"""How a production is cut into shards, and how each shard's seed and energies are derived.

Shard ``i`` holds events ``[i*K, min((i+1)*K, N))`` (``K`` = shard size). Everything random
about it comes from ``numpy.random.SeedSequence(seed, spawn_key=(i,))`` -- the same sequence as
``SeedSequence(seed).spawn(n)[i]`` for any ``n > i`` -- spawned once more into two children: the
first draws the shard's primary energies, the second gives the producer's integer seed. A shard
therefore depends only on (seed, i, K, energy spec, producer, layout), never on how many
workers run the production or in which order, and growing a production keeps its full shards.

Event-seeded producers (``seeding = "event"``, e.g. the MC, whose event ``j`` comes from its own
stream ``[seed, j]``) get the production seed and the shard's ``first_event`` instead, and draw
the energies themselves: then the production does not even depend on ``K`` and equals the
same events made in one piece (``caloforge simulate`` with that seed).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from caloforge.data.manifest import FORMAT_VERSION
from caloforge.errors import UserError
from caloforge.scale.producers import ProducerSpec

DEFAULT_SHARD_SIZE = 1000
SEEDING = {
    "shard": "SeedSequence(seed, spawn_key=(shard,)).spawn(2) -> [energies rng, producer seed "
             "= generate_state(1, uint64) >> 1]",
    "event": "producer(energies, seed, first_event): event j from its own stream [seed, j]; "
             "energies from producer.sample_energies(n, spec, seed, first_event)",
}


@dataclass(frozen=True)
class EnergySpec:
    """Primary energies of a production.

    ``uniform``: independent draws, uniform in ``[low, high)`` GeV, per shard from its energy rng.
    ``fixed``: the ``values`` (GeV) cycled over the global event index (event j gets
    ``values[j % len(values)]``), so no randomness is involved.
    """

    mode: str
    low: float = 0.0
    high: float = 0.0
    values: tuple[float, ...] = ()

    @classmethod
    def uniform(cls, low: float, high: float) -> EnergySpec:
        low, high = float(low), float(high)
        if not (math.isfinite(low) and math.isfinite(high) and 0 < low < high):
            raise UserError(f"energy range {low:g}:{high:g} GeV: need 0 < LOW < HIGH")
        return cls("uniform", low=low, high=high)

    @classmethod
    def fixed(cls, values: Any) -> EnergySpec:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
        if arr.size == 0:
            raise UserError("energies: no energy given")
        if not (np.isfinite(arr).all() and (arr > 0).all()):
            raise UserError("energies: every primary energy must be finite and > 0 GeV")
        return cls("fixed", values=tuple(float(v) for v in arr))

    def sample(self, first_event: int, n: int, rng: np.random.Generator) -> np.ndarray:
        """Energies (n,) float64 in GeV for events ``[first_event, first_event + n)``."""
        if self.mode == "uniform":
            return rng.uniform(self.low, self.high, size=n)
        vals = np.asarray(self.values, dtype=np.float64)
        return vals[(first_event + np.arange(n)) % vals.size]

    def to_json(self) -> dict[str, Any]:
        if self.mode == "uniform":
            return {"mode": "uniform", "low": self.low, "high": self.high}
        return {"mode": "fixed", "values": list(self.values)}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> EnergySpec:
        if obj.get("mode") == "uniform":
            return cls.uniform(obj["low"], obj["high"])
        if obj.get("mode") == "fixed":
            return cls.fixed(obj["values"])
        raise UserError(f"energy spec {obj!r}: unknown mode")


@dataclass(frozen=True)
class ShardTask:
    """One unit of work, small and picklable: everything a worker needs to write shard ``index``."""

    out_dir: str
    index: int
    first_event: int
    n_events: int
    seed: int
    energies: EnergySpec
    energy_entropy: tuple[int, ...]
    producer: ProducerSpec
    layout: str
    fingerprint: str
    seeding: str = "shard"
    compression: int | str = 4

    def draw_energies(self, producer: Any = None) -> np.ndarray:
        """The shard's primary energies (GeV); an event-seeded producer may draw them itself."""
        sampler = getattr(producer, "sample_energies", None)
        if self.seeding == "event" and sampler is not None:
            e = sampler(self.n_events, self.energies, self.seed, self.first_event)
            return np.asarray(e, dtype=np.float64)
        ss = np.random.SeedSequence(self.energy_entropy[0], spawn_key=self.energy_entropy[1:])
        return self.energies.sample(self.first_event, self.n_events, np.random.default_rng(ss))


@dataclass(frozen=True)
class Plan:
    """A production: ``n_events`` showers from ``producer`` in shards of ``shard_size`` events."""

    producer: ProducerSpec
    n_events: int
    shard_size: int
    seed: int
    energies: EnergySpec
    layout: str = "3dgan"  # caloforge.data.layouts.LAYOUT_3DGAN (not imported: no h5py here)
    seeding: str = "shard"

    def __post_init__(self) -> None:
        if self.n_events <= 0:
            raise UserError(f"n_events {self.n_events}: must be > 0")
        if self.shard_size <= 0:
            raise UserError(f"shard_size {self.shard_size}: must be > 0")
        if self.seed < 0:
            raise UserError(f"seed {self.seed}: must be >= 0")
        if self.seeding not in SEEDING:
            raise ValueError(f"seeding {self.seeding!r}: expected one of {sorted(SEEDING)}")
        from caloforge.data.layouts import LAYOUTS

        if self.layout not in LAYOUTS:
            raise UserError(f"layout {self.layout!r}: choose one of {', '.join(LAYOUTS)}")

    @property
    def n_shards(self) -> int:
        return -(-self.n_events // self.shard_size)

    def identity(self) -> dict[str, Any]:
        """What every shard's content depends on (the event count does not: see :meth:`shard`)."""
        return {
            "format_version": FORMAT_VERSION,
            "producer": self.producer.to_json(),
            "shard_size": self.shard_size,
            "seed": self.seed,
            "energies": self.energies.to_json(),
            "layout": self.layout,
            "seeding": self.seeding,
        }

    def fingerprint(self) -> str:
        """sha256 of :meth:`identity` as canonical JSON; stamped into every shard and sidecar."""
        text = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def shard(self, index: int, out_dir: str) -> ShardTask:
        if not 0 <= index < self.n_shards:
            raise IndexError(index)
        first = index * self.shard_size
        n = min(self.shard_size, self.n_events - first)
        energy_ss, producer_ss = shard_seed_sequences(self.seed, index)
        return ShardTask(
            out_dir=out_dir,
            index=index,
            first_event=first,
            n_events=n,
            seed=self.seed if self.seeding == "event" else producer_seed(producer_ss),
            energies=self.energies,
            energy_entropy=(int(cast(int, energy_ss.entropy)), *energy_ss.spawn_key),
            producer=self.producer,
            layout=self.layout,
            fingerprint=self.fingerprint(),
            seeding=self.seeding,
        )


def shard_seed_sequences(seed: int, index: int) -> tuple[np.random.SeedSequence, np.random.SeedSequence]:
    """``(energies, producer)`` seed sequences of shard ``index``; see the module docstring."""
    root = np.random.SeedSequence(seed, spawn_key=(index,))
    energy_ss, producer_ss = root.spawn(2)
    return energy_ss, producer_ss


def producer_seed(ss: np.random.SeedSequence) -> int:
    """A 63-bit integer seed (fits torch.manual_seed and numpy alike) from a seed sequence."""
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def fresh_seed() -> int:
    """A random 63-bit seed for a production started without one (recorded in the manifest)."""
    return producer_seed(np.random.SeedSequence())
