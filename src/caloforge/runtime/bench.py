"""Timing compiled generators in rotation (the engine part of ``caloforge bench``).

Method: every configuration is compiled once; after a warm-up, the configurations are timed in
rotation (round 1: A, B, C, ...; round 2: A, B, C, ...) so that machine noise (shared cores,
AMX/turbo swings) spreads over all of them; each entry is the median over the rounds, with the
min/max as spread. Layouts: ``1x1`` (1 stream x 1 thread), ``1xC`` (1 stream x all C cores) and
``Cx1`` (C streams x 1 thread). What to time and what else to measure (MC, physics) is
:mod:`caloforge.workflows.bench`'s.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from caloforge.runtime.backend import CompiledGenerator, cpu_count
from caloforge.runtime.engine import bench_inputs, events_for, time_run


@dataclass(frozen=True)
class BenchConfig:
    """One timed configuration: ``runtime`` (``torch`` | ``openvino`` | ``openvino-plain``: the
    ONNX graph as imported, no rewrite), precision label, layout and batch."""

    runtime: str
    precision: str
    streams: int
    threads: int
    batch: int

    @property
    def key(self) -> str:
        return f"{self.runtime}-{self.precision} {self.streams}x{self.threads} b{self.batch}"


@dataclass
class Timing:
    """Showers/s of one configuration, one sample per round."""

    samples: list[float] = field(default_factory=list)
    events_per_sample: int = 0


def layouts(cores: int | None = None) -> list[tuple[int, int]]:
    """(streams, threads): 1 x 1, 1 x C, C x 1 (duplicates removed)."""
    c = cores or cpu_count()
    return list(dict.fromkeys([(1, 1), (1, c), (c, 1)]))


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover
        pass
    return platform.processor() or "unknown CPU"


def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    fl = line.split(":", 1)[1].split()
                    return sorted(f for f in fl if f.startswith(("avx512", "amx")))
    except OSError:  # pragma: no cover
        pass
    return []


def time_in_rotation(gens: Mapping[str, CompiledGenerator], rounds: int, sample_seconds: float,
                     on_round: Callable[[int], None] | None = None,
                     on_run: Callable[[], None] | None = None) -> dict[str, Timing]:
    """Warm up every generator, size its sample to ~``sample_seconds``, then time all of them
    ``rounds`` times in rotation. ``on_round(r)`` after each round, ``on_run()`` after each run."""
    timings: dict[str, Timing] = {}
    for key, g in gens.items():
        z, e = bench_inputs(g.config.batch_size * g.config.streams, latent_dim=g.latent_dim)
        g.run(z, e)  # warm-up
        timings[key] = Timing([], events_for(g, sample_seconds, time_run(g, z, e)))
    for r in range(rounds):
        for key, g in gens.items():
            z, e = bench_inputs(timings[key].events_per_sample, seed=r, latent_dim=g.latent_dim)
            timings[key].samples.append(time_run(g, z, e))
            if on_run is not None:
                on_run()
        if on_round is not None:
            on_round(r)
    return timings
