"""Checks every command runs on its paths before it reads or writes anything.

:func:`check_io` refuses, with a :class:`~caloforge.errors.UserError` naming the path:

* an output that is one of the command's inputs: the same resolved path, or the same file under
  another name (a hard or symbolic link: same device and inode). An OpenVINO IR input
  ``model.xml`` brings its weights ``model.bin`` with it; an input directory (a production)
  counts with everything inside it;
* an output file that already exists and holds another kind of data than the command writes
  (an ONNX model, OpenVINO IR or safetensors weights named as the HDF5 output...); an empty file or
  a file of the same kind is replaced as usual;
* an output file named like a directory (trailing ``/``, or an existing directory), or one whose
  directory is missing, not a directory or not writable; an output directory that is a file or
  lies under a file.

It only looks: nothing is created or removed.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path

from caloforge.atomic import check_parent
from caloforge.errors import UserError

PathLike = str | os.PathLike[str]

#: Kinds of output file, as :func:`sniff` names their content.
KINDS = {"hdf5": "HDF5", "json": "JSON", "png": "PNG"}
_ARTICLE = {"hdf5": "an HDF5", "json": "a JSON", "png": "a PNG"}
_SUFFIX_KIND = {".onnx": "an ONNX model", ".xml": "an XML file (OpenVINO IR?)",
                ".bin": "binary weights (OpenVINO IR?)", ".safetensors": "safetensors weights",
                ".h5": "HDF5", ".hdf5": "HDF5", ".json": "JSON", ".png": "PNG"}


def sniff(path: PathLike) -> str | None:
    """What a file holds, from its first bytes (or its suffix): ``"HDF5"``, ``"JSON"``, ``"PNG"``,
    ``"an ONNX model"``, ... or None when neither tells."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return None
    for offset in (0, 512, 1024, 2048):  # HDF5 superblock: 0 or a power of two >= 512
        if head[offset:offset + 8] == b"\x89HDF\r\n\x1a\n":
            return "HDF5"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if len(head) >= 9 and head[8:9] == b"{":
        (n,) = struct.unpack("<Q", head[:8])
        if 0 < n <= p.stat().st_size - 8:
            return "safetensors weights"
    text = head.lstrip()
    if text.startswith(b"<?xml") or text.startswith(b"<net"):
        return "OpenVINO IR" if b"<net" in head else "XML"
    if text[:1] in (b"{", b"["):
        return "JSON"
    if head[:1] == b"\x08" and (b"pytorch" in head[:64] or p.suffix.lower() == ".onnx"):
        return "an ONNX model"
    return _SUFFIX_KIND.get(p.suffix.lower())


def _expand(inputs: Iterable[PathLike | None]) -> list[Path]:
    out = []
    for i in inputs:
        if i is None:
            continue
        p = Path(i)
        out.append(p)
        if p.suffix.lower() == ".xml":  # OpenVINO IR: the weights beside it
            out.append(p.with_suffix(".bin"))
    return out


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _clash(output: Path, inputs: list[Path], pattern: bool = False) -> Path | None:
    """The input ``output`` would overwrite, if any (``pattern``: its name is a glob pattern)."""
    magic = pattern and glob.has_magic(output.name)
    parent = output.parent.resolve()
    existing = ([Path(m) for m in glob.glob(os.path.join(glob.escape(str(output.parent)),
                                                         output.name))]
                if magic else [output])
    for i in inputs:
        r = i.resolve()
        same_path = (r.parent == parent and fnmatch.fnmatchcase(r.name, output.name)) if magic \
            else r == parent / output.name
        if same_path or any(_same(i, e) for e in existing):
            return i
        if i.is_dir() and (parent / output.name).is_relative_to(r):  # into an input directory
            return i
    return None


def _check_kind(path: Path, kind: str) -> None:
    if not path.is_file() or path.stat().st_size == 0:
        return
    found = sniff(path)
    if found != KINDS[kind]:
        holds = f"it holds {found}" if found else "it holds other data"
        raise UserError(f"{path}: exists and is not {_ARTICLE[kind]} file ({holds}); refusing to "
                        "overwrite it: remove it or choose another output")


def _check_dir(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: exists and is not a directory")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{path}: {parent} is not a directory")
            if not os.access(parent, os.W_OK):
                raise UserError(f"{path}: directory {parent} is not writable")
            return


def check_io(inputs: Iterable[PathLike | None] = (),
             files: Mapping[PathLike, str] | None = None,
             dirs: Mapping[PathLike, Iterable[str]] | None = None) -> None:
    """Refuse bad outputs before a command starts (see the module doc).

    ``inputs``: files or directories the command reads (None entries are skipped).
    ``files``: output file -> kind (``"hdf5"``, ``"json"`` or ``"png"``).
    ``dirs``: output directory -> names (glob patterns allowed) of the files written inside it.
    """
    ins = _expand(inputs)
    for raw, kind in (files or {}).items():
        if kind not in KINDS:
            raise ValueError(f"unknown output kind {kind!r}")
        text, path = os.fspath(raw), Path(raw)
        if text.endswith(("/", os.sep)) and not path.is_file():
            raise UserError(f"{text}: names a directory (trailing '/'); expected "
                            f"{_ARTICLE[kind]} file name")
        check_parent(path)
        hit = _clash(path, ins)
        if hit is not None:
            raise UserError(f"{path}: is also an input ({hit}); refusing to write over it")
        _check_kind(path, kind)
    for raw, names in (dirs or {}).items():
        path = Path(raw)
        _check_dir(path)
        for name in [".", *names]:
            hit = _clash(path / name if name != "." else path, ins, pattern=True)
            if hit is not None:
                if glob.has_magic(name):
                    raise UserError(f"{hit}: is also an input, and the output directory {path} "
                                    f"gets files {name}; refusing to write over it")
                target = path if name == "." else path / name
                raise UserError(f"{target}: is also an input ({hit}); refusing to write over it")


def make_output_dir(path: Path, what: str = "output folder") -> None:
    """Create the output directory ``path`` (and its parents); a file in its place or a
    directory that cannot be created is a UserError naming ``path`` and ``what`` it is."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: exists and is not a directory (the {what})")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{path}: cannot create the {what} ({exc.strerror})") from None


__all__ = ["KINDS", "check_io", "make_output_dir", "sniff"]
