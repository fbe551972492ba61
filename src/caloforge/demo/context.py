"""The demo's run state and folder helpers, shared by the driver and the stages."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caloforge.demo.settings import DemoSettings

STAGES_DIR = "stages"
SETTINGS_FILE = "settings.json"
#: Everything the demo writes in its folder (removed before a fresh, non-resumed run).
OWNED = ("mc", "gan", "validate", "tune", "bench", STAGES_DIR, "report.md", "demo.json",
         "fig1_fp32_vs_int8.png", "fig2_multistream.png")
#: Headline validation metrics kept in the stage results, (key in compare(), label).
VALIDATION_KEYS = ("shape_metric", "shape_moment_term", "shape_profile_term", "sep_power_mean",
                   "sep_power_spectrum", "corr_mean_diff", "fpd", "fpd_error", "kpd", "kpd_error",
                   "classifier_auc", "classifier_auc_error",
                   *(f"scan_{q}{suffix}" for q in ("response", "resolution", "hits", "shower_max")
                     for suffix in ("", "_error", "_energy")))

Log = Callable[[str], None]


@dataclass
class Context:
    out: Path
    settings: DemoSettings
    resume: bool
    progress: bool
    log: Log
    t_start: float = field(default_factory=time.perf_counter)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    timings: list[dict[str, Any]] = field(default_factory=list)
    ran_any: bool = False  # a stage ran in this invocation: every later stage must run too

    def path(self, rel: str) -> Path:
        return self.out / rel


def clock(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m}:{s:02d}"


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; on success it replaces ``final``.

    Temporary folders left by a killed earlier run (``.<name>.tmp-<pid>``) are removed."""
    for stale in final.parent.glob(f".{final.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


