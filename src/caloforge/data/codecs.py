"""How shower files are compressed: the codec of a :class:`caloforge.data.ShowerWriter`.

The default, ``gzip`` (HDF5's deflate filter after the byte-shuffle filter), opens with plain
h5py and no plugin — what the 3DGAN and CaloChallenge loaders expect. caloforge compresses the
chunks itself (:meth:`Codec.compress`: shuffle in NumPy, deflate with ISA-L's zlib-compatible
``isal_zlib``, or the standard ``zlib`` when ISA-L is missing; both release the GIL) in a thread
pool and hands them to HDF5 with a direct chunk write, so compression runs on every core and
never serializes on the GIL. The bytes are a standard zlib stream: any deflate decoder reads
them, whatever level or library wrote them.

Opt-in codecs through ``hdf5plugin`` (``lz4``, ``blosc2-lz4``, ``blosc2-zstd``) are faster but
non-standard: a reader needs ``pip install hdf5plugin`` and ``import hdf5plugin`` before
``h5py.File`` (caloforge's own reader does it).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from caloforge.errors import UserError

_deflate_impl: ModuleType
try:  # ISA-L: the same deflate format, several times faster (pinned in pyproject.toml)
    from isal import isal_zlib as _deflate_impl

    DEFLATE_LIBRARY = "isal"
except ImportError:  # pragma: no cover - isal is a dependency
    _deflate_impl = zlib
    DEFLATE_LIBRARY = "zlib"

PLUGIN_CODECS = ("lz4", "blosc2-lz4", "blosc2-zstd")
CODEC_NAMES = ("gzip", "none", *PLUGIN_CODECS)


def _isal_level(level: int) -> int:
    """gzip level 1-9 -> ISA-L level 1-3 (ISA-L has levels 0-3; 0 is Huffman-only, larger)."""
    return 1 if level <= 3 else 2 if level <= 6 else 3


def shuffle_bytes(chunk: np.ndarray) -> np.ndarray:
    """HDF5's shuffle filter: all first bytes of the elements, then all second bytes, ..."""
    size = chunk.dtype.itemsize
    return np.ascontiguousarray(chunk.reshape(-1).view(np.uint8).reshape(-1, size).T)


@dataclass(frozen=True)
class Codec:
    """A compression choice: ``name`` (``gzip``, ``none`` or a plugin codec) and ``level``
    (gzip: 1-9, stored as the filter's level; plugins: their compression level)."""

    name: str = "gzip"
    level: int = 1

    @property
    def direct(self) -> bool:
        """True: caloforge compresses the chunks (thread pool) and writes them directly."""
        return self.name in ("gzip", "none")

    def dataset_options(self) -> dict[str, Any]:
        """The h5py ``create_dataset`` filter options."""
        if self.name == "gzip":
            return {"compression": "gzip", "compression_opts": self.level, "shuffle": True}
        if self.name == "none":
            return {}
        try:
            import hdf5plugin
        except ImportError:
            raise UserError(f"compression {self.label()}: needs the hdf5plugin package "
                            "(pip install hdf5plugin)") from None
        if self.name == "lz4":
            return dict(hdf5plugin.LZ4())
        cname: Any = self.name.split("-", 1)[1]
        return dict(hdf5plugin.Blosc2(cname=cname, clevel=self.level,
                                      filters=hdf5plugin.Blosc2.SHUFFLE))

    def compress(self, chunk: np.ndarray) -> bytes | np.ndarray:
        """The stored bytes of one full chunk (direct codecs only); releases the GIL."""
        if self.name == "none":
            return np.ascontiguousarray(chunk)
        data = shuffle_bytes(chunk)
        if DEFLATE_LIBRARY == "isal":
            return _deflate_impl.compress(data, _isal_level(self.level))
        return _deflate_impl.compress(data, self.level)

    def label(self) -> str:
        return self.name if self.name in ("none", "lz4") else f"{self.name}:{self.level}"

    def as_attr(self) -> dict[str, Any]:
        return {"codec": self.name, "level": self.level,
                "library": DEFLATE_LIBRARY if self.name == "gzip" else
                ("hdf5plugin" if self.name in PLUGIN_CODECS else None),
                "reader_needs": "hdf5plugin" if self.name in PLUGIN_CODECS else "h5py"}


def parse_codec(value: int | str | Codec | None, what: str = "compression") -> Codec:
    """``Codec`` from a gzip level (0 = none, 1-9), a name (``gzip``, ``gzip:4``, ``none``,
    ``lz4``, ``blosc2-lz4``, ``blosc2-zstd``, ``blosc2-zstd:5``) or ``None`` (gzip 1)."""
    if value is None:
        return Codec()
    if isinstance(value, Codec):
        return value
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        level = int(value)
        if not 0 <= level <= 9:
            raise UserError(f"{what} {level}: expected a gzip level 0..9 or one of "
                            f"{', '.join(CODEC_NAMES)}")
        return Codec("none", 0) if level == 0 else Codec("gzip", level)
    text = str(value).strip().lower()
    if text.isdigit():
        return parse_codec(int(text), what)
    name, _, lev = text.partition(":")
    if name not in CODEC_NAMES:
        raise UserError(f"{what} {value!r}: unknown codec; choose a gzip level 0..9 or one of "
                        f"{', '.join(CODEC_NAMES)}")
    default = {"gzip": 1, "none": 0, "lz4": 0, "blosc2-lz4": 5, "blosc2-zstd": 5}[name]
    try:
        level = int(lev) if lev else default
    except ValueError:
        raise UserError(f"{what} {value!r}: the level after ':' must be an integer") from None
    top = 9
    if not (0 if name in ("none", "lz4") else 1) <= level <= top:
        raise UserError(f"{what} {value!r}: level {level} outside 1..{top}")
    return Codec(name, level)


__all__ = ["CODEC_NAMES", "DEFLATE_LIBRARY", "PLUGIN_CODECS", "Codec", "parse_codec",
           "shuffle_bytes"]
