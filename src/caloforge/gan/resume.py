"""What :func:`caloforge.gan.train.train` checks before it trains or resumes a run.

* :func:`check_values`: numeric options (learning rates, image scale, label-flip probability...)
  are finite and in range, before anything is created.
* :func:`data_fingerprint`: size + SHA-256 of the first and last MiB of the training file. It is
  stored in every checkpoint; a resume compares it, so a changed file is refused and the same file
  under another spelling (``./train.h5``, a link) is accepted. Checkpoints written before the
  fingerprint existed fall back to comparing the resolved paths.
* :func:`find_checkpoint`: the newest checkpoint that is complete (its JSON, written last, parses)
  and whose tensor files load; a newer broken one is skipped with one line saying so.
* :func:`check_resume`: the options that may not change across a resume.
* :func:`removing_created_dirs`: a failed run removes the (empty) folders it created.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from caloforge.errors import UserError
from caloforge.gan.checkpoint import load_tensors

BLOCK = 1 << 20  # bytes hashed at each end of the data file


def check_values(cfg: Any) -> None:
    """Raise UserError naming the first training option that is NaN, infinite or out of range."""
    def positive(name: str, value: float | None) -> None:
        if value is not None and not (math.isfinite(value) and value > 0):
            raise UserError(f"{name}: must be a finite number > 0, got {value!r}")

    for name in ("lr", "lr_d", "image_scale", "lr_decay"):
        positive(name, getattr(cfg, name))
    if not (math.isfinite(cfg.flip_prob) and 0 <= cfg.flip_prob < 0.5):
        raise UserError(f"flip_prob: must be in [0, 0.5), got {cfg.flip_prob!r}")
    for name, values in (("aux_weight", [cfg.aux_weight]), ("loss_weights", cfg.loss_weights),
                         *((k, [getattr(cfg, k)]) for k in
                           ("ring_weight", "spectrum_weight", "joint_weight", "r1_gamma",
                            "grad_clip"))):
        if not all(math.isfinite(v) and v >= 0 for v in values):
            raise UserError(f"{name}: must be finite numbers >= 0, got {values!r}")


def data_fingerprint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"size", "head_sha256", "tail_sha256"}`` of a file (its first and last MiB)."""
    p = Path(path)
    try:
        size = p.stat().st_size
        with open(p, "rb") as fh:
            head = hashlib.sha256(fh.read(BLOCK)).hexdigest()
            fh.seek(max(0, size - BLOCK))
            tail = hashlib.sha256(fh.read(BLOCK)).hexdigest()
    except FileNotFoundError:
        raise UserError(f"{p}: no such file") from None
    except OSError as exc:
        raise UserError(f"{p}: cannot read ({exc.strerror or exc})") from None
    return {"size": size, "head_sha256": head, "tail_sha256": tail}


def _say(log: Callable[[str], None] | None, msg: str) -> None:
    if log is not None:
        print(f"warning: {msg}", file=sys.stderr)
        log(msg)


def find_checkpoint(out: Path, log: Callable[[str], None] | None = None
                    ) -> tuple[int, dict[str, Any]] | None:
    """(epoch, JSON state) of the newest usable checkpoint in ``out/checkpoints``, or None.

    Usable: the JSON parses and both tensor files load. A newer checkpoint that is not is
    reported through ``log`` (and on stderr) when an older one is used instead."""
    skipped: list[str] = []
    for js in sorted((out / "checkpoints").glob("epoch-*.json"), reverse=True):
        stem = js.with_suffix("")
        try:
            state = json.loads(js.read_text())
            epoch = int(state["epoch"])
            for p in (f"{stem}.safetensors", f"{stem}.state.safetensors"):
                load_tensors(p, "checkpoint")
        except (OSError, ValueError, KeyError, TypeError, UserError) as exc:
            skipped.append(f"{js.name} ({exc})" if not isinstance(exc, UserError) else str(exc))
            continue
        if skipped:
            _say(log, f"skipped a broken newer checkpoint: {skipped[0]}; resuming from epoch {epoch}")
        return epoch, state
    if skipped:
        raise UserError(f"{out}: no usable checkpoint: {skipped[0]}")
    return None


def check_resume(out: Path, found: tuple[int, dict[str, Any]], cfg: Any, world: int,
                 frozen: tuple[str, ...]) -> None:
    """Refuse to resume checkpoint ``found`` with options that differ from the run's."""
    state = found[1]
    old = type(cfg).from_json(state["config"])
    for k in frozen:
        if k != "data" and getattr(old, k) != getattr(cfg, k):
            raise UserError(f"{out}: cannot resume with {k}={getattr(cfg, k)!r}; the run was "
                            f"started with {getattr(old, k)!r}")
    stored = state.get("data_fingerprint")
    if stored is not None:
        if data_fingerprint(cfg.data) != stored:
            raise UserError(f"{cfg.data}: the training data changed since the run started (its "
                            f"size or content differs from {old.data} at epoch {found[0]}); "
                            "resume with the original file or start a new run")
    elif Path(old.data).resolve() != Path(cfg.data).resolve():
        raise UserError(f"{out}: cannot resume with data={cfg.data!r}; the run was started with "
                        f"{old.data!r}")
    # every rank restores its own RNG state and data shard: the world size is frozen too
    old_world = int(state.get("world_size", 1))
    if old_world != world:
        raise UserError(f"{out}: cannot resume with {world} process(es); the run was started "
                        f"with {old_world}")


def require_run(out: Path) -> None:
    """A resume needs an existing run directory."""
    if not out.is_dir():
        raise UserError(f"{out}: no run to resume (no such directory); start the run without "
                        "resume")


@contextlib.contextmanager
def removing_created_dirs(out: str | os.PathLike[str]) -> Iterator[None]:
    """On an exception, remove ``out`` and the parents this block created, if left empty (with
    the empty sub-folders the run made)."""
    path = Path(out).absolute()
    missing = [p for p in (path / "checkpoints", path / "generators", path, *path.parents)
               if not p.exists()]
    try:
        yield
    except BaseException:
        for p in missing:  # deepest first; rmdir refuses non-empty folders
            with contextlib.suppress(OSError):
                p.rmdir()
        raise


__all__ = ["check_resume", "check_values", "data_fingerprint", "find_checkpoint",
           "removing_created_dirs", "require_run"]
