"""The one atomic, streaming HDF5 writer for shower data sets (``simulate``, ``generate``, Dask
shards, production merges; 3DGAN and CaloChallenge layouts).

:class:`ShowerWriter` appends blocks of showers to a temporary file next to the target and
renames it into place only when the ``with`` block ends without error, so an interrupted job
(exception, Ctrl-C, kill) never leaves a half-written data set under the final name.

Compression (:mod:`caloforge.data.codecs`): with the default gzip (and ``none``) the writer
compresses each chunk of ``chunk_events`` events itself, in a pool of ``threads`` threads
(deflate releases the GIL), and stores it with h5py's direct chunk write, in event order — the
file is the one h5py's own gzip + shuffle filters would describe, and it opens with plain
h5py. Plugin codecs go through HDF5's filter pipeline (``hdf5plugin``). The stored bytes do
not depend on the number of threads, nor on how the showers are split into ``append`` calls.
"""

from __future__ import annotations

import contextlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from caloforge.atomic import atomic_path
from caloforge.data.codecs import Codec, parse_codec
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

DEFAULT_THREADS = 2
"""Compression threads of a writer: deflate of one chunk runs on one thread; on a 2-core machine
two threads let it use whatever core inference leaves idle (docs/runtime.md, measured)."""


class ShowerWriter:
    """Stream showers into an HDF5 file, atomically.

    >>> with ShowerWriter("out.h5", grid=(25, 25, 25)) as w:   # doctest: +SKIP
    ...     w.append(images_gev, energies_gev)

    ``layout`` is ``"3dgan"`` (default; ``ECAL`` + ``energy`` in GeV) or ``"calochallenge"``
    (``showers`` + ``incident_energies`` in MeV). ``attrs`` are stored as file attributes
    (dicts and lists as JSON strings). Data are chunked by ``chunk_events`` events;
    ``compression``: a gzip level (0 = none), a codec name or a :class:`~caloforge.data.codecs.
    Codec`; ``threads``: compression threads (direct codecs). ``append`` does not keep the
    arrays it is given: when it returns, their events are in the file (or in the writer's
    one partial chunk).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        grid: tuple[int, ...] = (25, 25, 25),
        layout: str = LAYOUT_3DGAN,
        attrs: dict[str, Any] | None = None,
        chunk_events: int = 64,
        compression: int | str | Codec = 4,
        threads: int | None = None,
    ) -> None:
        if layout not in LAYOUTS:
            raise UserError(f"{path}: unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
        self.path = Path(path)
        self.grid = tuple(int(g) for g in grid)
        self.layout = layout
        self.attrs = dict(attrs or {})
        self.chunk_events = max(1, int(chunk_events))
        self.codec = parse_codec(compression)
        self.compression = self.codec.level
        self.threads = max(1, int(threads or DEFAULT_THREADS))
        self.n_written = 0
        self._n_stored = 0  # events in the file; the rest is in self._tail
        self._tail: np.ndarray | None = None
        self._n_tail = 0
        self._pool: ThreadPoolExecutor | None = None
        self._ctx: contextlib.AbstractContextManager[Path] | None = None
        self._h5: h5py.File | None = None

    def __enter__(self) -> ShowerWriter:
        if self.path.is_dir():
            raise UserError(f"{self.path}: is a directory")
        options = self.codec.dataset_options()  # a missing plugin fails before any file exists
        self._ctx = atomic_path(self.path, suffix=".h5")
        tmp = self._ctx.__enter__()
        try:
            self._h5 = h5py.File(tmp, "w")
        except OSError as exc:
            self._ctx.__exit__(type(exc), exc, exc.__traceback__)
            raise UserError(f"{self.path}: cannot write ({exc})") from None
        try:
            self._create(options)
        except BaseException as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        if self.codec.direct:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="caloforge-deflate")
        return self

    def _create(self, comp: dict[str, Any]) -> None:
        h5 = self._h5
        assert h5 is not None
        c = self.chunk_events
        if self.layout == LAYOUT_3DGAN:
            self._cell_shape: tuple[int, ...] = self.grid
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
            self._cell_shape = (n_cells,)
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
                 if self.layout == LAYOUT_3DGAN else "MeV", "compression": self.codec.as_attr(),
                 **self.attrs}
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
        if n == 0:
            return
        cells = images.reshape(n, *self._cell_shape)
        if self._scale != 1.0:
            cells = cells * np.float32(self._scale)
        lo = self.n_written
        self._en.resize(lo + n, axis=0)
        if self.layout == LAYOUT_3DGAN:
            self._en[lo:] = energies
        else:
            self._en[lo:] = (energies * np.float32(self._scale))[:, None]
        self.n_written += n
        if not self.codec.direct:
            self._img.resize(lo + n, axis=0)
            self._img[lo:] = cells
            self._n_stored = self.n_written
            return
        self._append_direct(cells)

    def _append_direct(self, cells: np.ndarray) -> None:
        c = self.chunk_events
        start = 0
        if self._n_tail:  # fill the partial chunk first
            take = min(c - self._n_tail, cells.shape[0])
            assert self._tail is not None
            self._tail[self._n_tail:self._n_tail + take] = cells[:take]
            self._n_tail += take
            start = take
            if self._n_tail == c:
                self._store([self._tail])
                self._tail, self._n_tail = None, 0
        n_full = (cells.shape[0] - start) // c
        self._store([cells[start + i * c:start + (i + 1) * c] for i in range(n_full)])
        rest = cells[start + n_full * c:]
        if rest.shape[0]:
            self._tail = np.zeros((c, *self._cell_shape), np.float32)
            self._tail[:rest.shape[0]] = rest
            self._n_tail = rest.shape[0]

    def _store(self, chunks: list[np.ndarray]) -> None:
        """Compress full chunks in the pool and write them in order (direct chunk write)."""
        if not chunks:
            return
        assert self._pool is not None
        c = self.chunk_events
        base = self._n_stored
        self._img.resize(base + len(chunks) * c, axis=0)
        zeros = (0,) * len(self._cell_shape)
        for i, fut in enumerate([self._pool.submit(self.codec.compress, ch) for ch in chunks]):
            self._img.id.write_direct_chunk((base + i * c, *zeros), fut.result())
        self._n_stored = base + len(chunks) * c

    def _finish(self) -> None:
        """Write the last partial chunk and trim the data set to the events appended."""
        if self._n_tail:
            assert self._tail is not None
            self._store([self._tail])
            self._tail, self._n_tail = None, 0
        if self.codec.direct:
            self._img.resize(self.n_written, axis=0)

    def set_attr(self, key: str, value: Any) -> None:
        assert self._h5 is not None
        self._h5.attrs[key] = json.dumps(value) if isinstance(value, dict | list | tuple) else value

    def _close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._h5 is not None:
            with contextlib.suppress(Exception):
                self._h5.close()
            self._h5 = None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        assert self._ctx is not None and self._h5 is not None
        try:
            if exc_type is None:
                self._finish()
            self._h5.attrs["n_events"] = self.n_written
        except BaseException as err:
            self._close()
            self._ctx.__exit__(type(err), err, err.__traceback__)
            raise
        self._close()
        if exc_type is None and self.n_written == 0:
            empty = UserError(f"{self.path}: no events to write")
            self._ctx.__exit__(UserError, empty, None)
            raise empty
        self._ctx.__exit__(exc_type, exc, tb)


def write_showers(
    path: str | os.PathLike[str],
    images: np.ndarray,
    energies: np.ndarray,
    layout: str = LAYOUT_3DGAN,
    attrs: dict[str, Any] | None = None,
    compression: int | str | Codec = 4,
) -> Path:
    """Write in-memory showers (GeV) to ``path`` atomically; returns the path."""
    images = np.asarray(images)
    with ShowerWriter(path, grid=tuple(images.shape[1:]), layout=layout, attrs=attrs,
                      compression=compression) as w:
        w.append(images, energies)
    return Path(path)


__all__ = ["DEFAULT_THREADS", "LAYOUT_CALOCHALLENGE", "ShowerWriter", "write_showers"]
