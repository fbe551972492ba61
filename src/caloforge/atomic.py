"""Atomic file output: write to a temporary file beside the target, then rename.

A crash (or Ctrl-C, or kill -9) while writing leaves the previous file, or no file, never a
half-written one. The temporary file lives in the target's directory so the final
``os.replace`` is a rename on the same file system (atomic on POSIX).

Temporary files are named ``.NAME.HOST-PID.XXXXXX.SUFFIX.tmp``: a writer killed with SIGKILL
cannot remove its own, so the next write of ``NAME`` removes those whose owning process (on this
host) no longer exists.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from caloforge.errors import UserError


def check_parent(path: Path) -> None:
    """Raise :class:`UserError` unless ``path`` can be written as a file (its directory exists, is
    a writable directory, and ``path`` is not a directory)."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise UserError(f"{path}: output directory {parent} does not exist")
    if not parent.is_dir():
        raise UserError(f"{path}: {parent} is not a directory")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a file")
    if not os.access(parent, os.W_OK):
        raise UserError(f"{path}: output directory {parent} is not writable")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed to ``path``.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    target = Path(path)
    check_parent(target)
    sfx = suffix if suffix is not None else target.suffix
    remove_dead_temporaries(target)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.{_owner()}.", suffix=f"{sfx}.tmp",
                                        dir=target.parent if str(target.parent) else ".")
    except OSError as exc:
        raise UserError(f"{path}: cannot write ({exc.strerror or exc})") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _owner() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def remove_dead_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Remove temporary files of ``path`` left by writers on this host that no longer run."""
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    prefix = f".{target.name}.{socket.gethostname()}-"
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(parent):
            name = entry.name
            if not (name.startswith(prefix) and name.endswith(".tmp")):
                continue
            pid = name[len(prefix):].split(".", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (fsynced before the rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
