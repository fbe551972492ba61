"""Trial history: one JSON object per line, appended and fsynced as the tuning goes.

A process killed mid-write leaves at most one torn last line; :func:`read_history` skips it (and
any other unreadable line) with a warning instead of failing, so ``--resume`` always works.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from caloforge.errors import UserError


def _clean(obj: Any) -> Any:
    """JSON has no NaN/inf: store them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        return _clean(obj.item())
    return obj


class HistoryWriter:
    """Append records to a JSONL file: one ``write`` + flush + fsync per record."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise UserError(f"{self.path}: directory {self.path.parent} does not exist")
        self._repair_tail()
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open for the run)

    def _repair_tail(self) -> None:
        """If the file ends without a newline (torn write), start our records on a fresh line."""
        if self.path.exists() and self.path.stat().st_size > 0:
            with open(self.path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                last = fh.read(1)
            if last != b"\n":
                with open(self.path, "ab") as fh:
                    fh.write(b"\n")
                    fh.flush()
                    os.fsync(fh.fileno())

    def append(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(_clean(record), sort_keys=True, separators=(",", ":"), allow_nan=False)
        self._fh.write(line + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_history(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All readable records of a history file (empty list if it does not exist).

    Lines that are not a JSON object (a torn last line after a kill, say) are skipped with a
    :class:`RuntimeWarning` naming the line.
    """
    p = Path(path)
    if not p.exists():
        return []
    records: list[dict[str, Any]] = []
    with open(p, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            text = raw.strip()
            if not text:
                continue
            try:
                obj = json.loads(text.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                obj = None
            if not isinstance(obj, dict):
                warnings.warn(f"{p}:{number}: unreadable history line skipped (torn write?)",
                              RuntimeWarning, stacklevel=2)
                continue
            records.append(obj)
    return records
