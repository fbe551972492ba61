"""The model card's validation: ``caloforge validate`` of a generator against an MC test file.

:func:`validate_generator` generates one shower per event of the test file, at its energies
(PyTorch FP32, noise seed :data:`CARD_NOISE_SEED`), zeroes the cells below the model's cell
threshold exactly as the runtime writes them (``cell_threshold_gev`` of a ``phase`` model; the
3DGAN's 1e-6 GeV, :data:`caloforge.facts.CELL_THRESHOLD_GEV`), writes them to a temporary HDF5
file and runs :func:`caloforge.physics.validate` on it against the test file, with the floor
from a second independent MC file (or simulated at the test file's energies when none is
given). :func:`card_summary` keeps what the card quotes: the verdict line, the worst
metric/floor ratio, every metric with its floor and ratio, the 3DGAN metric's bins and the
per-energy targets of issue 15.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from caloforge.facts import CELL_THRESHOLD_GEV, IMAGE_SHAPE

#: Noise seed used to generate the showers the card's metrics are computed on.
CARD_NOISE_SEED = 20261127


def model_threshold(gen: torch.nn.Module) -> float:
    """The cell threshold (GeV) the runtime applies to ``gen``'s showers."""
    t = getattr(gen, "cell_threshold_gev", None)
    return float(f"{float(t):.7g}") if t is not None else CELL_THRESHOLD_GEV  # a float32 buffer


def write_generated(gen: torch.nn.Module, energies: np.ndarray, path: str | os.PathLike[str],
                    seed: int = CARD_NOISE_SEED, chunk: int = 250) -> Path:
    """One shower of ``gen`` per energy (GeV) into ``path`` (3DGAN layout), cells below the
    model's threshold exactly zero; returns the path."""
    from caloforge.data import ShowerWriter

    thr = model_threshold(gen)
    latent = int(getattr(gen, "latent_dim"))  # noqa: B009 (an int attribute)
    rng = torch.Generator().manual_seed(int(seed))
    attrs = {"generator": "caloforge.gan.card_validation", "seed": int(seed),
             "cell_threshold_gev": thr,
             "architecture": str(getattr(gen, "architecture", "3dgan"))}
    with ShowerWriter(path, grid=IMAGE_SHAPE, attrs=attrs, compression=1) as w, torch.no_grad():
        for lo in range(0, len(energies), chunk):
            e = torch.as_tensor(np.asarray(energies[lo:lo + chunk]), dtype=torch.float32)
            z = torch.randn(len(e), latent, generator=rng)
            img = gen(z, e).float().numpy()
            np.copyto(img, np.float32(0.0), where=img < np.float32(thr))
            w.append(img, e.numpy().astype(np.float64))
    return Path(path)


def validate_generator(gen: torch.nn.Module, test_data: str, floor_data: str | None = None,
                       max_events: int | None = None, output_dir: str | os.PathLike[str] | None
                       = None, classifier: bool = True, plots: bool = False) -> dict[str, Any]:
    """``caloforge validate`` of ``gen`` against ``test_data`` (floor: ``floor_data``, else
    simulated); returns :func:`card_summary` of the result. ``output_dir``: keep validate's
    metrics.json / report.md (/ plots) there; otherwise they go to a temporary folder."""
    from caloforge.data import open_showers
    from caloforge.physics import validate

    with open_showers(test_data) as f:
        energies = f.energies()
    if max_events is not None:
        energies = energies[:max_events]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="caloforge-card-") as tmp:
        cand = write_generated(gen, energies, Path(tmp) / "candidate.h5")
        out = Path(output_dir) if output_dir is not None else Path(tmp) / "validate"
        res = validate(test_data, cand, out, floor_path=floor_data, max_events=max_events,
                       classifier=classifier, plots=plots)
    summary = card_summary(res)
    summary.update({"candidate": f"{len(energies)} showers of this generator at the test file's "
                                 f"energies (PyTorch FP32, noise seed {CARD_NOISE_SEED}, cells "
                                 f"below {model_threshold(gen):g} GeV zero)",
                    "noise_seed": CARD_NOISE_SEED, "cell_threshold_gev": model_threshold(gen),
                    "seconds": time.perf_counter() - t0})
    if output_dir is not None:
        summary["report"] = str(Path(output_dir) / "report.md")
    return summary


def _metric_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: r.get(k) for k in ("key", "label", "value", "floor", "ratio", "far")}
            for r in rows if r.get("counts")]


def _per_energy(scan: dict[str, Any], label: str) -> list[dict[str, Any]]:
    out = []
    for r in scan.get("diffs", {}).get(label, []):
        row = {"energy_gev": r["energy"], "n_ref": r["n_ref"], "n": r["n"]}
        if "skipped" in r:
            row["skipped"] = r["skipped"]
        else:
            for q in scan["targets"]:
                row[f"d_{q}"] = r[f"d_{q}"]
                row[f"ok_{q}"] = r[f"ok_{q}"]
            row["ok"] = all(r[f"ok_{q}"] for q in scan["targets"])
        out.append(row)
    return out


def _met(rows: list[dict[str, Any]]) -> str:
    used = [r for r in rows if "skipped" not in r]
    return f"{sum(r['ok'] for r in used)}/{len(used)}"


def card_summary(res: dict[str, Any]) -> dict[str, Any]:
    """What the card keeps of a :func:`caloforge.physics.validate` result."""
    vd, scan = res["verdict"], res["energy_scan"]
    cand, floor = res["candidate_vs_reference"], res.get("floor_vs_reference")
    per_energy = _per_energy(scan, "candidate")
    out: dict[str, Any] = {
        "reference": res["reference"], "floor": res.get("floor"), "n_events": res["n_events"],
        "level": vd["level"], "verdict": vd["line"], "worst": vd["worst"],
        "worst_ratio": vd["worst_ratio"], "far": vd["far"], "metrics": _metric_rows(vd["rows"]),
        "targets": scan["targets"], "per_energy": per_energy,
        "per_energy_targets_met": _met(per_energy),
        "scan_hit_threshold_gev": res.get("scan_hit_threshold_gev"),
    }
    if floor is not None:
        fl = _per_energy(scan, "floor")
        out["floor_per_energy_targets_met"] = _met(fl)
    out["shape_metric"] = _shape(cand)
    if floor is not None:
        out["floor_shape_metric"] = _shape(floor)
    return out


def _shape(metrics: dict[str, Any]) -> dict[str, Any]:
    br = metrics.get("shape_breakdown") or {}
    return {"metric": metrics.get("shape_metric"), "moment_term": metrics.get("shape_moment_term"),
            "profile_term": metrics.get("shape_profile_term"),
            "bins": [{k: b.get(k) for k in ("bin", "n_ref", "n_cand", "P", "Q", "skipped")}
                     for b in br.get("bins", [])]}


__all__ = ["CARD_NOISE_SEED", "card_summary", "model_threshold", "validate_generator",
           "write_generated"]
