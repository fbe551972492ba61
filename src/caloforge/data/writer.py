"""Atomic, streaming HDF5 writers for shower data sets.

:class:`ShowerWriter` appends blocks of showers to a temporary file next to the target and
renames it into place only when the ``with`` block ends without error, so an interrupted job
(exception, Ctrl-C, kill) never leaves a half-written data set under the final name.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from caloforge.atomic import atomic_path
from caloforge.data.layouts import (
    KEY_ECAL,
    KEY_ENERGY,
    KEY_INCIDENT,
    KEY_SHOWERS,
    LAYOUT_3DGAN,
    LAYOUT_CALOCHALLENGE,
    LAYOUTS,
    MEV_PER_GEV,
)
from caloforge.errors import UserError


class ShowerWriter:
    """Stream showers into an HDF5 file, atomically.

    >>> with ShowerWriter("out.h5", grid=(25, 25, 25)) as w:   # doctest: +SKIP
    ...     w.append(images_gev, energies_gev)

    ``layout`` is ``"3dgan"`` (default; ``ECAL`` + ``energy`` in GeV) or ``"calochallenge"``
    (``showers`` + ``incident_energies`` in MeV). ``attrs`` are stored as file attributes
    (dicts and lists as JSON strings). Data are chunked by event and gzip-compressed.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        grid: tuple[int, ...] = (25, 25, 25),
        layout: str = LAYOUT_3DGAN,
        attrs: dict[str, Any] | None = None,
        chunk_events: int = 64,
        compression: int = 4,
    ) -> None:
        if layout not in LAYOUTS:
            raise UserError(f"{path}: unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
        self.path = Path(path)
        self.grid = tuple(int(g) for g in grid)
        self.layout = layout
        self.attrs = dict(attrs or {})
        self.chunk_events = chunk_events
        self.compression = compression
        self.n_written = 0
        self._ctx: contextlib.AbstractContextManager[Path] | None = None
        self._h5: h5py.File | None = None

    def __enter__(self) -> ShowerWriter:
        if self.path.is_dir():
            raise UserError(f"{self.path}: is a directory")
        self._ctx = atomic_path(self.path, suffix=".h5")
        tmp = self._ctx.__enter__()
        try:
            self._h5 = h5py.File(tmp, "w")
        except OSError as exc:
            self._ctx.__exit__(type(exc), exc, exc.__traceback__)
            raise UserError(f"{self.path}: cannot write ({exc})") from None
        self._create()
        return self

    def _create(self) -> None:
        h5 = self._h5
        assert h5 is not None
        c = max(1, self.chunk_events)
        comp = {"compression": "gzip", "compression_opts": self.compression, "shuffle": True}
        if self.layout == LAYOUT_3DGAN:
            self._img = h5.create_dataset(
                KEY_ECAL, shape=(0, *self.grid), maxshape=(None, *self.grid), dtype="f4",
                chunks=(c, *self.grid), **comp,
            )
            self._img.attrs["unit"] = "GeV"
            self._img.attrs["axes"] = "event, x, y, z (z = layer, beam direction)"
            self._en = h5.create_dataset(KEY_ENERGY, shape=(0,), maxshape=(None,), dtype="f4",
                                         chunks=(max(c, 1024),))
            self._en.attrs["unit"] = "GeV"
            self._scale = 1.0
        else:
            n_cells = int(np.prod(self.grid))
            self._img = h5.create_dataset(
                KEY_SHOWERS, shape=(0, n_cells), maxshape=(None, n_cells), dtype="f4",
                chunks=(c, n_cells), **comp,
            )
            self._img.attrs["unit"] = "MeV"
            self._en = h5.create_dataset(KEY_INCIDENT, shape=(0, 1), maxshape=(None, 1), dtype="f4",
                                         chunks=(max(c, 1024), 1))
            self._en.attrs["unit"] = "MeV"
            self._scale = MEV_PER_GEV
        attrs = {"layout": self.layout, "grid": list(self.grid), "energy_unit": "GeV"
                 if self.layout == LAYOUT_3DGAN else "MeV", **self.attrs}
        from caloforge import __version__

        attrs.setdefault("caloforge_version", __version__)
        for k, v in attrs.items():
            h5.attrs[k] = json.dumps(v) if isinstance(v, dict | list | tuple) else v

    def append(self, images: np.ndarray, energies: np.ndarray) -> None:
        """Append showers: ``images`` (n, *grid) in GeV, ``energies`` (n,) in GeV."""
        if self._h5 is None:
            raise RuntimeError("ShowerWriter.append outside its 'with' block")
        images = np.asarray(images, dtype=np.float32)
        energies = np.asarray(energies, dtype=np.float32).reshape(-1)
        n = images.shape[0]
        if images.shape[1:] != self.grid:
            raise UserError(f"{self.path}: showers of shape {images.shape[1:]} do not match the grid {self.grid}")
        if energies.shape[0] != n:
            raise UserError(f"{self.path}: {n} showers but {energies.shape[0]} energies")
        lo = self.n_written
        self._img.resize(lo + n, axis=0)
        self._en.resize(lo + n, axis=0)
        if self.layout == LAYOUT_3DGAN:
            self._img[lo:] = images
            self._en[lo:] = energies
        else:
            self._img[lo:] = images.reshape(n, -1) * np.float32(self._scale)
            self._en[lo:] = (energies * np.float32(self._scale))[:, None]
        self.n_written += n

    def set_attr(self, key: str, value: Any) -> None:
        assert self._h5 is not None
        self._h5.attrs[key] = json.dumps(value) if isinstance(value, dict | list | tuple) else value

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        assert self._ctx is not None and self._h5 is not None
        try:
            self._h5.attrs["n_events"] = self.n_written
            self._h5.close()
        finally:
            self._h5 = None
            if exc_type is None and self.n_written == 0:
                err = UserError(f"{self.path}: no events to write")
                self._ctx.__exit__(UserError, err, None)
                raise err
            self._ctx.__exit__(exc_type, exc, tb)


def write_showers(
    path: str | os.PathLike[str],
    images: np.ndarray,
    energies: np.ndarray,
    layout: str = LAYOUT_3DGAN,
    attrs: dict[str, Any] | None = None,
) -> Path:
    """Write in-memory showers (GeV) to ``path`` atomically; returns the path."""
    images = np.asarray(images)
    with ShowerWriter(path, grid=tuple(images.shape[1:]), layout=layout, attrs=attrs) as w:
        w.append(images, energies)
    return Path(path)


__all__ = ["LAYOUT_CALOCHALLENGE", "ShowerWriter", "write_showers"]
