"""Productions at scale: showers made shard by shard on Dask, resumable and verifiable.

    from caloforge.scale import produce, open_production
    produce("run1", 100_000, "mc", seed=1, shard_size=1000, workers=8)
    with open_production("run1") as prod:          # reads like caloforge.data.ShowerFile
        images, energies = prod.read(0, 100)

See docs/scale.md: sharding and seeds, the manifest, resume, fault tolerance, clusters.
Dask is imported only when a production actually runs on it, h5py only when one is made or read.
The command-line options (``--workers``, ``--scheduler``, ``--shard-size``) are
:mod:`caloforge.cli._scale`'s.
"""

from typing import Any

from caloforge.scale.plan import DEFAULT_SHARD_SIZE, EnergySpec, Plan
from caloforge.scale.producers import ProducerSpec, load_producer, register_producer

_LAZY = {
    "ProductionError": "shard", "ProductionSummary": "production", "produce": "production",
    "run_shard": "shard",
    "ProductionFile": "data", "is_production": "data", "merge_production": "data",
    "open_production": "data",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'caloforge.scale' has no attribute {name!r}")
    import importlib

    if module == "data":  # the reader lives in the data layer (caloforge.data.production)
        return getattr(importlib.import_module("caloforge.data.production"), name)
    return getattr(importlib.import_module(f"caloforge.scale.{module}"), name)

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "EnergySpec",
    "Plan",
    "ProducerSpec",
    "ProductionError",
    "ProductionFile",
    "ProductionSummary",
    "is_production",
    "load_producer",
    "merge_production",
    "open_production",
    "produce",
    "register_producer",
    "run_shard",
]
