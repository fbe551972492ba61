"""Streaming readers for 3DGAN and CaloChallenge HDF5 files.

Files are never loaded whole: :meth:`ShowerFile.iter_chunks` reads a block of events at a
time, so a 10 GB file needs memory for one chunk only. Every problem with a file is raised as
:class:`~caloforge.errors.UserError` naming the file and the problem.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from caloforge.data.layouts import (
    DEFAULT_GRID,
    KEY_ECAL,
    KEY_ENERGY,
    KEY_INCIDENT,
    KEY_SHOWERS,
    KEY_TARGET,
    LAYOUT_3DGAN,
    LAYOUT_CALOCHALLENGE,
    MEV_PER_GEV,
)
from caloforge.errors import UserError


def _load_plugins() -> None:
    """Register hdf5plugin's filters (LZ4, Blosc2, ...) when installed: files written with an
    opt-in codec of :mod:`caloforge.data.codecs` then read like gzip ones."""
    import contextlib

    with contextlib.suppress(ImportError):
        import hdf5plugin  # noqa: F401

class ShowerFile:
    """An open shower data set. Use as a context manager or call :meth:`close`.

    Attributes: ``path``, ``layout`` (``"3dgan"`` or ``"calochallenge"``), ``grid`` (cells per
    axis, layer axis last), ``n_events``, ``attrs`` (file attributes as a dict).
    """

    def __init__(self, path: str | os.PathLike[str], grid: tuple[int, ...] | None = None) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise UserError(f"{self.path}: no such file")
        if self.path.is_dir():
            raise UserError(f"{self.path}: is a directory, expected an HDF5 file")
        try:
            is_h5 = h5py.is_hdf5(self.path)
        except OSError as exc:
            raise UserError(f"{self.path}: cannot read file ({exc})") from None
        if not is_h5:
            raise UserError(f"{self.path}: not an HDF5 file")
        _load_plugins()
        try:
            self._h5 = h5py.File(self.path, "r")
        except OSError as exc:
            raise UserError(f"{self.path}: corrupt or unreadable HDF5 file ({exc})") from None
        try:
            self._inspect(grid)
        except BaseException:
            self._h5.close()
            raise

    # ------------------------------------------------------------------ layout detection
    def _inspect(self, grid: tuple[int, ...] | None) -> None:
        h5 = self._h5
        keys = set(h5.keys())
        self.attrs: dict[str, Any] = {k: _attr_value(v) for k, v in h5.attrs.items()}
        for key in (KEY_ECAL, KEY_ENERGY, KEY_TARGET, KEY_SHOWERS, KEY_INCIDENT):
            if key in keys and not isinstance(h5[key], h5py.Dataset):
                raise UserError(f"{self.path}: '{key}' is a {type(h5[key]).__name__}, expected a dataset")
        if KEY_ECAL in keys:
            self.layout = LAYOUT_3DGAN
            ecal = h5[KEY_ECAL]
            if not isinstance(ecal, h5py.Dataset) or ecal.ndim != 4:
                raise UserError(
                    f"{self.path}: dataset '{KEY_ECAL}' has shape {getattr(ecal, 'shape', '?')}, "
                    "expected (N, X, Y, Z)"
                )
            self._images = ecal
            self.grid = tuple(int(s) for s in ecal.shape[1:])
            self.n_events = int(ecal.shape[0])
            if KEY_ENERGY in keys:
                en = h5[KEY_ENERGY]
                if en.ndim == 2 and en.shape[1] == 1:
                    self._energy_sel: Any = (KEY_ENERGY, 0)
                elif en.ndim == 1:
                    self._energy_sel = (KEY_ENERGY, None)
                else:
                    raise UserError(
                        f"{self.path}: dataset '{KEY_ENERGY}' has shape {en.shape}, expected (N,)"
                    )
                n_en = en.shape[0]
            elif KEY_TARGET in keys:
                tg = h5[KEY_TARGET]
                if tg.ndim != 2 or tg.shape[1] < 2:
                    raise UserError(
                        f"{self.path}: dataset '{KEY_TARGET}' has shape {tg.shape}, "
                        "expected (N, >=2) with the energy in column 1"
                    )
                self._energy_sel = (KEY_TARGET, 1)
                n_en = tg.shape[0]
            else:
                raise UserError(
                    f"{self.path}: 3DGAN layout without primary energies: "
                    f"no '{KEY_ENERGY}' or '{KEY_TARGET}' dataset (keys: {sorted(keys)})"
                )
            self._unit = 1.0
        elif KEY_SHOWERS in keys:
            self.layout = LAYOUT_CALOCHALLENGE
            sh = h5[KEY_SHOWERS]
            if sh.ndim != 2:
                raise UserError(
                    f"{self.path}: dataset '{KEY_SHOWERS}' has shape {sh.shape}, expected (N, n_cells)"
                )
            if KEY_INCIDENT not in keys:
                raise UserError(f"{self.path}: CaloChallenge layout without '{KEY_INCIDENT}'")
            inc = h5[KEY_INCIDENT]
            if inc.ndim not in (1, 2) or (inc.ndim == 2 and inc.shape[1] != 1):
                raise UserError(
                    f"{self.path}: dataset '{KEY_INCIDENT}' has shape {inc.shape}, expected (N, 1)"
                )
            self._energy_sel = (KEY_INCIDENT, 0 if inc.ndim == 2 else None)
            n_en = inc.shape[0]
            file_grid = self.attrs.get("grid")
            g = tuple(int(v) for v in (grid or file_grid or DEFAULT_GRID))
            if int(np.prod(g)) != sh.shape[1]:
                raise UserError(
                    f"{self.path}: {sh.shape[1]} cells per shower do not match the grid {g} "
                    f"({int(np.prod(g))} cells); give the grid explicitly"
                )
            self._images = sh
            self.grid = g
            self.n_events = int(sh.shape[0])
            self._unit = 1.0 / MEV_PER_GEV
        else:
            raise UserError(
                f"{self.path}: unknown layout: expected '{KEY_ECAL}' (3DGAN) or "
                f"'{KEY_SHOWERS}' (CaloChallenge), found keys {sorted(keys)}"
            )
        key = self._energy_sel[0]
        for name, ds in ((self._images.name.lstrip("/"), self._images), (key, h5[key])):
            if not _is_real_number(ds.dtype):
                raise UserError(f"{self.path}: dataset '{name}' holds {ds.dtype}, expected real numbers")
        if n_en != self.n_events:
            raise UserError(
                f"{self.path}: {self.n_events} showers but {n_en} primary energies"
            )
        if grid is not None and tuple(grid) != self.grid:
            raise UserError(f"{self.path}: grid {self.grid} does not match the expected {tuple(grid)}")
        if self.n_events == 0:
            raise UserError(f"{self.path}: the file holds no events")

    # ------------------------------------------------------------------ access
    def energies(self) -> np.ndarray:
        """Primary energies in GeV, float64 (N,), checked finite and positive."""
        key, col = self._energy_sel
        try:
            data = self._h5[key][...] if col is None else self._h5[key][:, col]
        except OSError as exc:
            raise UserError(f"{self.path}: corrupt HDF5 data in dataset '{key}' ({exc})") from None
        e = np.asarray(data, dtype=np.float64).reshape(-1) * self._unit
        bad = ~np.isfinite(e)
        if bad.any():
            raise UserError(
                f"{self.path}: {int(bad.sum())} primary energies are NaN or infinite "
                f"(first at event {int(np.argmax(bad))})"
            )
        if (e <= 0).any():
            i = int(np.argmax(e <= 0))
            raise UserError(f"{self.path}: primary energy {e[i]:g} GeV at event {i} is not positive")
        return e

    def read(self, start: int = 0, stop: int | None = None, check: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Read events ``[start, stop)``: images float32 (n, *grid) in GeV and energies (n,) GeV."""
        stop = self.n_events if stop is None else min(stop, self.n_events)
        try:
            raw = self._images[start:stop]
            key, col = self._energy_sel
            en = self._h5[key][start:stop] if col is None else self._h5[key][start:stop, col]
        except OSError as exc:
            raise UserError(f"{self.path}: corrupt HDF5 data in events {start}..{stop - 1} ({exc})") from None
        img = np.asarray(raw, dtype=np.float32)
        if self._unit != 1.0:
            img = img * np.float32(self._unit)
        img = img.reshape((stop - start, *self.grid))
        if check:
            if not np.isfinite(img).all():
                raise UserError(f"{self.path}: NaN or infinite cell energies in events {start}..{stop - 1}")
            if (img < 0).any():
                raise UserError(f"{self.path}: negative cell energies in events {start}..{stop - 1}")
        en = np.asarray(en, dtype=np.float64).reshape(-1) * self._unit
        if not (np.isfinite(en).all() and (en > 0).all()):
            raise UserError(f"{self.path}: NaN, infinite or non-positive primary energy in events {start}..{stop - 1}")
        return img, en

    def iter_chunks(
        self, chunk_size: int = 1000, start: int = 0, stop: int | None = None, check: bool = True
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(images, energies)`` blocks of at most ``chunk_size`` events."""
        stop = self.n_events if stop is None else min(stop, self.n_events)
        for lo in range(start, stop, chunk_size):
            yield self.read(lo, min(lo + chunk_size, stop), check=check)

    def close(self) -> None:
        self._h5.close()

    def __enter__(self) -> ShowerFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self.n_events

    def __repr__(self) -> str:
        return f"ShowerFile({str(self.path)!r}, layout={self.layout!r}, n_events={self.n_events}, grid={self.grid})"


def _is_real_number(dtype: np.dtype) -> bool:
    return bool(np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating))


def _attr_value(v: Any) -> Any:
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, str) and v[:1] in "{[":
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def open_showers(path: str | os.PathLike[str], grid: tuple[int, ...] | None = None) -> ShowerFile:
    """Open a 3DGAN or CaloChallenge HDF5 file (layout detected from its keys), or a sharded
    caloforge production (its directory or its ``manifest.json``) as one data set."""
    p = Path(path)
    if p.is_dir() or p.suffix == ".json":
        from caloforge.data.production import open_production

        return open_production(p, grid=grid)  # type: ignore[return-value]
    return ShowerFile(path, grid=grid)


def read_showers(path: str | os.PathLike[str], max_events: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read (up to ``max_events``) showers into memory: ``(images GeV, energies GeV)``."""
    with open_showers(path) as f:
        return f.read(0, max_events)
