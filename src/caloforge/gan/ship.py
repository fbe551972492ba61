"""Install a trained generator as the package default (``caloforge/gan/default/``).

    caloforge train --export-default RUN_DIR [...]     (the command line)
    export_default(run_dir, epoch=None, test_data=..., floor_data=...)   (the library)

Writes ``generator.safetensors``, ``generator.onnx`` (via :func:`caloforge.gan.export.export_onnx`)
and ``model_card.json``, each atomically, the card last. The card records the training data
(size, energy range, MC seed), training seed and configuration, epochs, wall time, hardware, the
3DGAN metric of the generator against an independent MC sample (``--test-data``) and the
MC-vs-MC floor (``--test-data`` against ``--floor-data``), and the command to reproduce it.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from caloforge.atomic import write_json
from caloforge.errors import CaloforgeError, UserError
from caloforge.gan.checkpoint import load_generator, read_metadata, save_generator
from caloforge.gan.export import export_onnx
from caloforge.gan.phase import PhaseGenerator
from caloforge.gan.shipped import CARD_NAME, DEFAULT_DIR, ONNX_NAME, WEIGHTS_NAME

#: Noise seed used to generate the showers the card's metric is computed on.
CARD_NOISE_SEED = 20261127


def _mc_seed(path: str) -> Any:
    from caloforge.data import open_showers

    with open_showers(path) as f:
        return f.attrs.get("seed"), f.n_events, f.attrs.get("generator")


def _nominal_range(path: str | None) -> list[float] | None:
    """The ``uniform_GeV`` range of an MC file's ``energy_spectrum`` attribute, if any."""
    if not path:
        return None
    from caloforge.data import open_showers

    try:
        with open_showers(path) as f:
            spec = f.attrs.get("energy_spectrum")
    except CaloforgeError:
        return None
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except ValueError:
            return None
    if isinstance(spec, dict) and isinstance(spec.get("uniform_GeV"), list | tuple):
        lo, hi = spec["uniform_GeV"]
        return [float(lo), float(hi)]
    return None


def mc_floor(reference: str, other: str, max_events: int | None = None) -> dict[str, Any]:
    """3DGAN metric of one MC file against another (the statistical floor of the metric)."""
    from caloforge.gan.train import Validator

    v = Validator(reference, max_events or 10**9, 0)
    w = Validator(other, max_events or 10**9, 0)
    b = v.metric.breakdown(w.reference)
    return {"metric": b["metric"], "moment_term": b["moment_term"], "profile_term": b["profile_term"],
            "reference": str(reference), "other": str(other), "n_reference": len(v.energies),
            "n_other": len(w.energies)}


def evaluate(generator_path: str | os.PathLike[str], test_data: str,
             max_events: int | None = None) -> dict[str, Any]:
    """3DGAN metric of a generator file against an MC file (showers generated at its energies)."""
    import torch

    from caloforge.gan.train import Validator

    gen = load_generator(generator_path)
    v = Validator(test_data, max_events or 10**9, CARD_NOISE_SEED)
    t0 = time.perf_counter()
    b = v.metric.breakdown(v.generate_sample(gen, torch.device("cpu")))
    return {"metric": b["metric"], "moment_term": b["moment_term"], "profile_term": b["profile_term"],
            "n_bins_used": b["n_bins_used"], "reference": str(test_data),
            "n_events": len(v.energies), "noise_seed": CARD_NOISE_SEED,
            "seconds": time.perf_counter() - t0,
            "bins": [{k: r.get(k) for k in ("bin", "n_ref", "P", "Q", "skipped")} for r in b["bins"]]}


def export_default(run_dir: str | os.PathLike[str], epoch: int | None = None,
                   test_data: str | None = None, floor_data: str | None = None,
                   reproduce: str | None = None, dest: str | os.PathLike[str] = DEFAULT_DIR,
                   max_events: int | None = None, note: str | None = None) -> dict[str, Any]:
    """Install ``run_dir``'s best generator (or that of ``epoch``) into ``dest``; returns the card."""
    run = Path(run_dir)
    if not run.is_dir():
        raise UserError(f"{run}: no such run directory")
    src = run / "best.safetensors" if epoch is None else run / "generators" / f"epoch-{epoch:04d}.safetensors"
    if not src.is_file():
        raise UserError(f"{src}: no such generator file in the run"
                        + ("" if epoch is None else " (was that epoch trained?)"))
    gen = load_generator(src)
    meta = read_metadata(src)
    config = json.loads(meta.get("config", "{}"))
    exported_epoch = int(json.loads(meta.get("epoch", "0")))
    e_range = json.loads(meta.get("energy_range_gev", "[2.0, 500.0]"))
    history: list[dict[str, Any]] = []
    mfile = run / "metrics.jsonl"
    if mfile.is_file():
        history = [json.loads(line) for line in mfile.read_text().splitlines() if line.strip()]
    row = next((h for h in history if h.get("epoch") == exported_epoch), {})
    hardware = None
    ck = sorted((run / "checkpoints").glob("epoch-*.json"))
    if ck:
        hardware = json.loads(ck[-1].read_text()).get("hardware")

    card: dict[str, Any] = {
        "status": "trained",
        **_architecture_fields(gen),
        "energy_range_gev": [float(e_range[0]), float(e_range[1])],
        "latent_dim": gen.latent_dim,
        "inputs": {"z": f"(B, {gen.latent_dim}) standard normal",
                   "energy": "(B,) primary energy, GeV"},
        "source": {"run_dir": str(run), "file": src.name, "epoch": exported_epoch,
                   "epochs_in_run": len(history)},
        "seed": config.get("seed"),
        "training": {"config": config,
                     "epochs": exported_epoch,
                     "wall_seconds_to_this_epoch": row.get("wall_seconds"),
                     "samples_per_s": row.get("samples_per_s"),
                     "hardware": hardware,
                     "validation_metric_at_epoch": row.get("val_metric")},
    }
    nominal = _nominal_range(config.get("data"))
    if nominal is not None and nominal[0] <= e_range[0] and e_range[1] <= nominal[1]:
        e_range = nominal  # the data set's nominal spectrum (e.g. uniform 2-500), not its extremes
        card["energy_range_gev"] = [float(e_range[0]), float(e_range[1])]
    if config.get("data"):
        try:
            seed, n, generator = _mc_seed(config["data"])
            used = n if config.get("max_events") is None else min(n, int(config["max_events"]))
            card["data_set"] = {"path": config["data"], "events_in_file": n, "events_used": used,
                                "energy_range_gev": [float(e_range[0]), float(e_range[1])],
                                "mc_seed": seed, "generator": generator}
        except CaloforgeError:
            card["data_set"] = {"path": config["data"], "note": "file not available at export"}
    if test_data:
        card["metric"] = evaluate(src, test_data, max_events)
        with contextlib.suppress(CaloforgeError):
            card["metric"]["mc_seed"] = _mc_seed(test_data)[0]
    if test_data and floor_data:
        card["mc_floor"] = mc_floor(test_data, floor_data, max_events)
        card["mc_floor"]["mc_seeds"] = [_mc_seed(test_data)[0], _mc_seed(floor_data)[0]]
    if reproduce:
        card["reproduce"] = reproduce
    if note:
        card["note"] = note
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    save_generator(gen, out / WEIGHTS_NAME, {"epoch": exported_epoch, "energy_range_gev": e_range,
                                             "architecture": card["architecture"],
                                             "config": config})
    export_onnx(gen, out / ONNX_NAME)
    card["onnx_parity_rel_l2"] = _onnx_parity(gen, out / ONNX_NAME)
    write_json(out / CARD_NAME, card)
    return card


def _architecture_fields(gen: Any) -> dict[str, Any]:
    """Card fields that say which architecture the generator is and how its output is made."""
    if isinstance(gen, PhaseGenerator):
        return {"model": "phase generator (caloforge.gan.phase.PhaseGenerator: sub-pixel "
                         "transposed convolutions, log cell energies, per-cell noise inputs)",
                "architecture": "phase",
                "cell_threshold_gev": float(gen.cell_threshold_gev),
                "output": "showers (B, 25, 25, 25) visible cell energy, GeV; cells below "
                          "cell_threshold_gev are exact zeros"}
    return {"model": "3DGAN energy-only generator (caloforge.gan.model.Generator)",
            "architecture": "3dgan", "image_scale": float(gen.image_scale),
            "output": "showers (B, 25, 25, 25) visible cell energy, GeV"}


def _onnx_parity(gen: Any, onnx_path: Path) -> float | None:
    """Relative L2 between onnxruntime and PyTorch on 8 showers (None without onnxruntime)."""
    try:
        import onnxruntime as ort
    except ImportError:  # pragma: no cover
        return None
    import torch

    rng = torch.Generator().manual_seed(0)
    z = torch.randn(8, gen.latent_dim, generator=rng)
    e = torch.linspace(2.0, 500.0, 8)
    with torch.no_grad():
        ref = gen(z, e).numpy()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"z": z.numpy(), "energy": e.numpy()})[0]
    return float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30))
