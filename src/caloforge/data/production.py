"""Read a finished production as one data set, or merge it into one HDF5 file.

:class:`ProductionFile` has the interface of :class:`caloforge.data.ShowerFile` (``n_events``,
``grid``, ``layout``, ``attrs``, ``energies()``, ``read(start, stop)``, ``iter_chunks()``), with
event numbers running over the shards in shard order, so ``validate`` and ``info`` read a
production like a file. Only a few shard files are kept open at a time. This module needs no Dask.
"""

from __future__ import annotations

import bisect
import os
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from caloforge.data import manifest as mf
from caloforge.data.reader import ShowerFile
from caloforge.data.writer import ShowerWriter
from caloforge.errors import UserError

MAX_OPEN_SHARDS = 4


def is_production(path: str | os.PathLike[str]) -> bool:
    """True for a production directory (holding ``manifest.json``) or a ``manifest.json`` path."""
    p = Path(path)
    if p.is_dir():
        return (p / mf.MANIFEST).is_file()
    return p.suffix == ".json" and p.is_file()


class ProductionFile:
    """A complete production opened as one data set. Use as a context manager or :meth:`close`.

    Attributes: ``path`` (the directory), ``manifest`` (dict), ``layout``, ``grid``,
    ``n_events``, ``n_shards``, ``attrs``.
    """

    def __init__(self, path: str | os.PathLike[str], grid: tuple[int, ...] | None = None) -> None:
        p = Path(path)
        self.manifest = mf.load_manifest(p)
        self.path = p if p.is_dir() else p.parent
        m = self.manifest
        if m.get("status") != "complete":
            done = len(list((self.path / mf.SHARD_DIR).glob("shard-*.json")))
            raise UserError(f"{self.path}: production is incomplete ({done} of {m.get('n_shards')} "
                            "shards written); rerun the same command to finish it")
        self.shards: list[dict[str, Any]] = list(m["shards"])
        if [s["index"] for s in self.shards] != list(range(len(self.shards))):
            raise UserError(f"{self.path}: manifest shard list is not 0..{len(self.shards) - 1}")
        for s in self.shards:
            f = self.path / s["file"]
            if not f.is_file():
                raise UserError(f"{f}: shard listed in the manifest is missing")
            if f.stat().st_size != s["bytes"]:
                raise UserError(f"{f}: size {f.stat().st_size} differs from the manifest "
                                f"({s['bytes']}); the shard was modified or truncated")
        self.layout: str = m["layout"]
        self.grid: tuple[int, ...] = tuple(int(g) for g in m["grid"])
        self.n_events = int(sum(s["n_events"] for s in self.shards))
        if self.n_events != m["n_events"]:
            raise UserError(f"{self.path}: shards hold {self.n_events} events, manifest says "
                            f"{m['n_events']}")
        if grid is not None and tuple(grid) != self.grid:
            raise UserError(f"{self.path}: grid {self.grid} does not match the expected {tuple(grid)}")
        self.n_shards = len(self.shards)
        self._starts = [int(s["first_event"]) for s in self.shards]
        self.attrs: dict[str, Any] = {
            "layout": self.layout,
            "grid": list(self.grid),
            "n_events": self.n_events,
            "producer": m["producer"],
            "seed": m["seed"],
            "shard_size": m["shard_size"],
            "n_shards": self.n_shards,
            "energies": m["energies"],
            "caloforge_version": m.get("caloforge_version"),
            "production_fingerprint": m["fingerprint"],
            "energy_unit": "GeV",
        }
        self._open: OrderedDict[int, ShowerFile] = OrderedDict()

    # ------------------------------------------------------------------ shards
    def _shard(self, i: int) -> ShowerFile:
        f = self._open.pop(i, None)
        if f is None:
            f = ShowerFile(self.path / self.shards[i]["file"], grid=self.grid)
            if f.n_events != self.shards[i]["n_events"]:
                f.close()
                raise UserError(f"{f.path}: {f.n_events} events, the manifest says "
                                f"{self.shards[i]['n_events']}")
            while len(self._open) >= MAX_OPEN_SHARDS:
                self._open.popitem(last=False)[1].close()
        self._open[i] = f
        return f

    def verify(self) -> list[int]:
        """Check every shard's sha256 against the manifest; returns the indices that fail."""
        return [s["index"] for s in self.shards
                if mf.sha256_file(self.path / s["file"]) != s["sha256"]]

    # ------------------------------------------------------------------ access
    def energies(self) -> np.ndarray:
        """Primary energies in GeV, float64 (N,), in event order over all shards."""
        return np.concatenate([self._shard(i).energies() for i in range(self.n_shards)])

    def read(self, start: int = 0, stop: int | None = None,
             check: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Events ``[start, stop)`` across shards: images float32 (n, *grid) GeV, energies (n,) GeV."""
        stop = self.n_events if stop is None else min(stop, self.n_events)
        start = max(0, start)
        if stop <= start:
            return np.zeros((0, *self.grid), np.float32), np.zeros(0, np.float64)
        images, energies = [], []
        i = bisect.bisect_right(self._starts, start) - 1
        pos = start
        while pos < stop:
            s0 = self._starts[i]
            n = self.shards[i]["n_events"]
            hi = min(stop, s0 + n)
            img, en = self._shard(i).read(pos - s0, hi - s0, check=check)
            images.append(img)
            energies.append(en)
            pos = hi
            i += 1
        if len(images) == 1:
            return images[0], energies[0]
        return np.concatenate(images), np.concatenate(energies)

    def iter_chunks(self, chunk_size: int = 1000, start: int = 0, stop: int | None = None,
                    check: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(images, energies)`` blocks of at most ``chunk_size`` events (may span shards)."""
        stop = self.n_events if stop is None else min(stop, self.n_events)
        for lo in range(start, stop, chunk_size):
            yield self.read(lo, min(lo + chunk_size, stop), check=check)

    def close(self) -> None:
        while self._open:
            self._open.popitem()[1].close()

    def __enter__(self) -> ProductionFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self.n_events

    def __repr__(self) -> str:
        return (f"ProductionFile({str(self.path)!r}, layout={self.layout!r}, "
                f"n_events={self.n_events}, n_shards={self.n_shards}, grid={self.grid})")


def open_production(path: str | os.PathLike[str],
                    grid: tuple[int, ...] | None = None) -> ProductionFile:
    """Open a finished production (its directory or its ``manifest.json``) as one data set."""
    return ProductionFile(path, grid=grid)


def merge_production(path: str | os.PathLike[str], out: str | os.PathLike[str],
                     chunk_size: int = 1000, verify: bool = True) -> Path:
    """Write a finished production into one HDF5 file ``out`` (atomically); returns ``out``.

    ``verify``: check every shard's sha256 against the manifest first (UserError on mismatch).
    """
    with open_production(path) as prod:
        if verify:
            bad = prod.verify()
            if bad:
                raise UserError(f"{prod.path}: shard(s) {bad} do not match their manifest "
                                "checksum; rerun the production to recompute them")
        attrs = {k: v for k, v in prod.attrs.items()
                 if k not in ("layout", "grid", "n_events", "energy_unit")}
        attrs["merged_from"] = str(prod.path.absolute())
        with ShowerWriter(out, grid=prod.grid, layout=prod.layout, attrs=attrs) as w:
            for images, energies in prod.iter_chunks(chunk_size):
                w.append(images, energies)
    return Path(out)
