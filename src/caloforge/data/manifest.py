"""On-disk layout of a production: shard files, per-shard sidecars and the manifest.

    DIR/manifest.json               the production (plan, status, one entry per shard)
    DIR/shards/shard-00012.h5       the showers of shard 12 (3DGAN layout, ShowerWriter)
    DIR/shards/shard-00012.json     its sidecar: count, seed, energy range, sha256, who wrote it
    DIR/.lock                       held (flock) by the client running the production

Every file is written atomically (temporary file + rename), the sidecar after its shard. A
shard is *done* iff its ``.h5`` and sidecar exist, the sidecar matches the plan (fingerprint,
index, count) and the sha256 of the ``.h5`` equals the one in the sidecar. Anything else is
recomputed; a stray temporary file (a worker killed mid-write) is never taken for a shard.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from caloforge.atomic import write_json
from caloforge.errors import UserError

#: Manifest format of a sharded production (``DIR/manifest.json``).
FORMAT = "caloforge-production"
FORMAT_VERSION = 1

MANIFEST = "manifest.json"
SHARD_DIR = "shards"
LOCK = ".lock"
MANIFEST_SHARD_KEYS = (
    "index", "file", "first_event", "n_events", "seed", "energy_min", "energy_max", "sha256", "bytes",
)


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def shard_path(out_dir: str | os.PathLike[str], index: int) -> Path:
    return Path(out_dir) / SHARD_DIR / f"{shard_name(index)}.h5"


def sidecar_path(out_dir: str | os.PathLike[str], index: int) -> Path:
    return Path(out_dir) / SHARD_DIR / f"{shard_name(index)}.json"


def sha256_file(path: str | os.PathLike[str], block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None if it is missing or unreadable."""
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def write_sidecar(out_dir: str | os.PathLike[str], index: int, record: dict[str, Any]) -> None:
    write_json(sidecar_path(out_dir, index), record)


def shard_done(out_dir: str | os.PathLike[str], index: int, n_events: int, fingerprint: str,
               expected_sha256: str | None = None) -> dict[str, Any] | None:
    """The sidecar of shard ``index`` if the shard is complete and intact, else None."""
    h5 = shard_path(out_dir, index)
    side = read_json(sidecar_path(out_dir, index))
    if side is None or not h5.is_file():
        return None
    if (side.get("fingerprint") != fingerprint or side.get("index") != index
            or side.get("n_events") != n_events):
        return None
    if expected_sha256 is not None and side.get("sha256") != expected_sha256:
        return None
    try:
        if h5.stat().st_size != side.get("bytes") or sha256_file(h5) != side.get("sha256"):
            return None
    except OSError:
        return None
    return side


def remove_stale_temporaries(out_dir: str | os.PathLike[str]) -> list[Path]:
    """Delete temporary files left by killed writers (``.shard-*.tmp``, ``.manifest.json.*.tmp``).

    Only call while holding the production lock with no task of this production running.
    """
    removed = []
    d = Path(out_dir)
    for pattern in (f"{SHARD_DIR}/.shard-*.tmp", f".{MANIFEST}.*.tmp"):
        for p in d.glob(pattern):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed.append(p)
    return removed


def load_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a manifest (``DIR`` or ``DIR/manifest.json``); raises UserError."""
    p = Path(path)
    mpath = p / MANIFEST if p.is_dir() else p
    if not mpath.exists():
        raise UserError(f"{mpath}: no such file (not a caloforge production)")
    try:
        obj = json.loads(mpath.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{mpath}: unreadable manifest ({exc})") from None

    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise UserError(f"{mpath}: not a caloforge production manifest")
    if obj.get("format_version", 0) > FORMAT_VERSION:
        raise UserError(f"{mpath}: manifest format {obj.get('format_version')} is newer than this "
                        f"caloforge understands ({FORMAT_VERSION}); upgrade caloforge")
    return obj


def write_manifest(out_dir: str | os.PathLike[str], manifest: dict[str, Any]) -> None:
    write_json(Path(out_dir) / MANIFEST, manifest)


@contextlib.contextmanager
def production_lock(out_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on ``DIR/.lock`` (released when the process ends, even on kill)."""
    path = Path(out_dir) / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{out_dir}: another caloforge production is running in this "
                            "directory") from None
        except OSError:
            pass  # file system without locks (some NFS set-ups): go on without
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.uname().nodename} {os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)
