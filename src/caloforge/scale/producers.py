"""Shower producers: what a production runs on each shard, and the per-process engine cache.

A *producer* is a callable ``producer(energies, seed) -> (images, energies)``: primary energies
float64 (n,) in GeV and an integer seed in, showers float32 (n, X, Y, Z) in GeV (layer axis last)
and their primary energies (n,) in GeV out; it gets one seed per shard. An *event-seeded*
producer (its factory has ``seeding = "event"``, like the MC) is called
``producer(energies, seed, first_event=k)`` with the production seed and draws event ``j`` from
a stream of its own, and may draw the energies itself (``sample_energies(n, spec, seed, k)``).

A production names its producer with a :class:`ProducerSpec` (a kind and JSON options), never
with a live object: the spec travels to the Dask workers, is written into the manifest, and is
the key of the per-process cache (:func:`load_producer`), so each worker process builds an engine
(e.g. loads and compiles the GAN) once and reuses it for every shard it runs.

Kinds: ``"mc"`` (GFlash Monte Carlo), ``"gan"`` (the inference runtime, options ``model`` and
``precision``), or ``"package.module:factory"`` (any importable callable that takes the options
as keyword arguments and returns a producer; the module must be importable on the workers).
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from caloforge.errors import UserError

Producer = Callable[..., tuple[np.ndarray, np.ndarray]]
"""``producer(energies GeV float64 (n,), seed) -> (images float32 (n, X, Y, Z) GeV, energies (n,) GeV)``."""

ProducerFactory = Callable[..., Producer]


@dataclass(frozen=True)
class ProducerSpec:
    """Which producer a production runs: ``kind`` and JSON-serialisable ``options``."""

    kind: str
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def mc(cls, **options: Any) -> ProducerSpec:
        """The GFlash Monte Carlo (:func:`caloforge.mc.simulate`); options are passed to it."""
        return cls("mc", dict(options))

    @classmethod
    def gan(cls, model: str | os.PathLike[str] | None = None, precision: str | None = None,
            **options: Any) -> ProducerSpec:
        """The GAN through :mod:`caloforge.runtime`: ``model`` path (None: the shipped model),
        ``precision``; more options in :class:`GANProducer`. The path is made absolute."""
        if model is not None:
            model = str(Path(model).absolute())
        opts: dict[str, Any] = {"model": model, "precision": precision, **options}
        return cls("gan", {k: v for k, v in opts.items() if v is not None})

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "options": dict(self.options)}

    @classmethod
    def from_json(cls, obj: Any) -> ProducerSpec:
        """Accept a spec, a kind string (``"mc"``) or a ``{"kind", "options"}`` mapping."""
        if isinstance(obj, ProducerSpec):
            return obj
        if isinstance(obj, str):
            return cls(obj, {})
        if isinstance(obj, dict) and isinstance(obj.get("kind"), str):
            return cls(obj["kind"], dict(obj.get("options") or {}))
        raise UserError(f"producer {obj!r}: expected 'mc', 'gan', 'module:factory' or a ProducerSpec")

    def key(self) -> str:
        """Canonical JSON text: equal specs have equal keys (cache key, fingerprint input). A GAN
        spec's key includes the SHA-256 of its model file (the shipped one when no path is
        given), so a production resumed after the default model changed is refused instead
        of mixing shards of two models."""
        obj = self.to_json()
        if self.kind == "gan":
            obj["model_sha256"] = _model_digest(self.options.get("model"))
        try:
            return json.dumps(obj, sort_keys=True, separators=(",", ":"))
        except TypeError as exc:
            raise UserError(f"producer {self.kind!r}: options must be JSON values ({exc})") from None

    def __str__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in sorted(self.options.items()))
        return f"{self.kind}({opts})" if opts else self.kind


def _model_digest(model: str | None) -> str | None:
    from caloforge.gan.shipped import default_onnx_path

    try:
        path = Path(model) if model else default_onnx_path()
        st = path.stat()
    except (UserError, OSError):
        return None  # the producer itself reports a missing model
    return _digest(str(path.resolve()), st.st_mtime_ns, st.st_size) if path.is_file() else None


@functools.lru_cache(maxsize=16)
def _digest(path: str, mtime_ns: int, size: int) -> str:
    from caloforge.data.manifest import sha256_file

    return sha256_file(path)


# ---------------------------------------------------------------------- built-in producers
class MCProducer:
    """The GFlash MC as an *event-seeded* producer.

    :func:`caloforge.mc.simulate` draws event ``j`` from its own stream ``[seed, j]`` and
    :func:`caloforge.mc.sample_energies` draws energies per block of the global event index, so a
    shard is simulated with the production seed and its ``first_event``: the production equals,
    bit for bit, ``caloforge simulate`` with the same seed and energies, whatever the shard size.
    """

    seeding = "event"

    def __init__(self, **options: Any) -> None:
        from caloforge import mc

        self._mc = mc
        self.options = options

    def sample_energies(self, n: int, spec: Any, seed: int, first_event: int) -> np.ndarray:
        if spec.mode == "uniform":
            return self._mc.sample_energies(n, energy_range=(spec.low, spec.high), seed=seed,
                                            first_event=first_event)
        return self._mc.sample_energies(n, energies=np.asarray(spec.values), seed=seed,
                                        first_event=first_event)

    def __call__(self, energies: np.ndarray, seed: int,
                 first_event: int = 0) -> tuple[np.ndarray, np.ndarray]:
        out = self._mc.simulate(energies, seed=seed, first_event=first_event, **self.options)
        return out[0], out[1]


def _make_mc(**options: Any) -> Producer:
    return MCProducer(**options)


_make_mc.seeding = "event"  # type: ignore[attr-defined]


class GANProducer:
    """The conditional 3DGAN through :mod:`caloforge.runtime`, compiled once per process.

    Event-seeded like the runtime itself (latent vector and energy of event ``j`` come from
    ``(seed, j)``: :func:`caloforge.runtime.latent_noise`), so a production equals
    ``caloforge generate`` with the same model, precision, seed and energies.
    Options: ``model`` (path; None = the shipped model), ``precision`` (fp32 / bf16 / int8),
    ``backend`` (openvino), ``streams`` (int or "auto"), ``threads``, ``batch_size``,
    ``allow_extrapolation``.
    """

    seeding = "event"

    def __init__(self, model: str | None = None, precision: str = "fp32", *,
                 backend: str = "openvino", streams: int | str = "auto", threads: int | None = None,
                 batch_size: int | None = None, allow_extrapolation: bool = False) -> None:
        from caloforge import runtime
        from caloforge.runtime.generate import model_energy_range

        self._rt = runtime
        self.model = model
        nthreads = _dask_worker_threads()
        if nthreads is not None and streams == "auto" and threads is None:
            # on a Dask worker: use the worker's cores (probing would take the whole node)
            streams, threads = 1, nthreads
        self.allow_extrapolation = allow_extrapolation
        self.gen = runtime.compile_model(model, precision, backend=backend, streams=streams,
                                         threads=threads, batch_size=batch_size)
        self.trained_range = model_energy_range(self.gen, model)
        self._lock = threading.Lock()  # one compiled model per process, shared by its threads

    def sample_energies(self, n: int, spec: Any, seed: int, first_event: int) -> np.ndarray:
        if spec.mode == "uniform":
            return self._rt.uniform_energies(seed, first_event, first_event + n, spec.low, spec.high)
        from caloforge.runtime.noise import cycled_energies

        return cycled_energies(np.asarray(spec.values), first_event, first_event + n)

    def __call__(self, energies: np.ndarray, seed: int,
                 first_event: int = 0) -> tuple[np.ndarray, np.ndarray]:
        e = self._rt.check_energies(energies, self.trained_range, self.allow_extrapolation)
        z = self._rt.latent_noise(seed, first_event, first_event + e.size, self.gen.latent_dim)
        with self._lock:
            images = self.gen.run(z, e.astype(np.float32))
        from caloforge.runtime.generate import model_label
        from caloforge.runtime.showers import finish_showers

        # the runtime's checks and exact zeros, as for generate
        return finish_showers(images, self.gen.cell_threshold_gev, model_label(self.gen)), e


def _dask_worker_threads() -> int | None:
    """Threads of the Dask worker running this code, or None outside a worker."""
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return None


def _make_gan(**options: Any) -> Producer:
    return GANProducer(**options)


_make_gan.seeding = "event"  # type: ignore[attr-defined]


_FACTORIES: dict[str, ProducerFactory] = {"mc": _make_mc, "gan": _make_gan}
# How a production runs without --scheduler/--workers (see docs/scale.md, measured):
# "processes": a local Dask cluster, one single-threaded worker per core (the MC is one
# numpy thread per call); "in-process": the runtime already uses every core by itself.
_LOCAL_MODE: dict[str, str] = {"mc": "processes", "gan": "in-process"}


# gzip level of the shard files: GAN showers have few empty cells and compress slowly; level 1
# writes them about twice as fast as 4 (as caloforge.runtime does), see docs/scale.md.
_COMPRESSION: dict[str, int] = {"gan": 1}


def default_compression(spec: ProducerSpec) -> int:
    """The gzip level shard files of this producer get by default (4, GAN: 1)."""
    return _COMPRESSION.get(spec.kind, 4)


def register_producer(kind: str, factory: ProducerFactory, local_mode: str = "processes") -> None:
    """Register a producer kind in this process (workers need it too: prefer 'module:factory')."""
    if local_mode not in ("processes", "in-process"):
        raise ValueError(f"local_mode {local_mode!r}: expected 'processes' or 'in-process'")
    _FACTORIES[kind] = factory
    _LOCAL_MODE[kind] = local_mode


def seeding_of(spec: ProducerSpec) -> str:
    """``"event"`` if the producer seeds each event from (production seed, event index), else
    ``"shard"`` (it gets one seed per shard). Read from the factory's ``seeding`` attribute."""
    return getattr(resolve_factory(spec), "seeding", "shard")


def local_mode(spec: ProducerSpec) -> str:
    """``"processes"`` or ``"in-process"``: the faster local default for this producer."""
    return _LOCAL_MODE.get(spec.kind, "processes")


def resolve_factory(spec: ProducerSpec) -> ProducerFactory:
    """The factory for ``spec.kind``; raises UserError for an unknown kind."""
    factory = _FACTORIES.get(spec.kind)
    if factory is not None:
        return factory
    if ":" in spec.kind:
        mod_name, _, attr = spec.kind.partition(":")
        try:
            module = importlib.import_module(mod_name)
        except ImportError as exc:
            raise UserError(f"producer {spec.kind!r}: cannot import {mod_name!r} ({exc})") from None
        obj: Any = module
        for part in attr.split("."):
            obj = getattr(obj, part, None)
        if not callable(obj):
            raise UserError(f"producer {spec.kind!r}: {attr!r} is not a callable in {mod_name!r}")
        return obj
    known = ", ".join(sorted(_FACTORIES))
    raise UserError(f"producer {spec.kind!r}: unknown kind; choose {known} or 'module:factory'")


_CACHE: dict[str, Producer] = {}
_CACHE_LOCK = threading.RLock()  # re-entrant: a factory may load another producer


def load_producer(spec: ProducerSpec) -> Producer:
    """Build the producer for ``spec`` once per process and return the cached one after that.

    This is the per-worker engine cache: a Dask worker process keeps its producer (a loaded
    and compiled model) across all the shards it runs; a new spec builds a new one.
    """
    key = spec.key()
    with _CACHE_LOCK:
        producer = _CACHE.get(key)
        if producer is None:
            producer = resolve_factory(spec)(**spec.options)
            _CACHE[key] = producer
        return producer

