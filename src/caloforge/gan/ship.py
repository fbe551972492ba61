"""Install a trained generator as the package default (``caloforge/gan/default/``).

    caloforge train --export-default RUN_DIR [--epoch K] --test-data T.h5 --floor-data F.h5
    export_default(run_dir, epoch=None, test_data=..., floor_data=..., dest=None)  (the library)

Works for both architectures (``3dgan``, ``phase``; the weights say which). Writes
``generator.safetensors``, ``generator.onnx`` (via :func:`caloforge.gan.export.export_onnx`) and
``model_card.json``, each atomically, the card last, into ``dest`` (default:
:func:`caloforge.gan.shipped.default_dir`: the package's ``default/``, or
``$CALOFORGE_DEFAULT_MODEL_DIR`` to install a candidate elsewhere and try the whole chain on
it). The card records the architecture, latent size, cell threshold, the layer-energy library
(size and source) of a phase model, the training data (size, energy range, MC seed, distinct
events), training seed and configuration, epochs, showers seen, wall time, device and hardware,
``caloforge validate``'s verdict against an independent MC sample (``--test-data``) with the
MC-vs-MC floor (``--floor-data``; :mod:`caloforge.gan.card_validation`), and the command to
reproduce it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from caloforge.atomic import write_json
from caloforge.errors import CaloforgeError, UserError
from caloforge.gan.card_validation import CARD_NOISE_SEED
from caloforge.gan.checkpoint import load_generator, read_metadata, save_generator
from caloforge.gan.export import export_onnx
from caloforge.gan.phase import PHASE_LATENT_DIM, PhaseGenerator
from caloforge.gan.shipped import (
    CARD_NAME,
    ONNX_NAME,
    PACKAGE_DIR,
    REFERENCE_DIR,
    WEIGHTS_NAME,
    default_dir,
    reference_3dgan_dir,
)
from caloforge.iocheck import make_output_dir


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


def _resolve(path: str | None, run: Path) -> str | None:
    """A path recorded in a run's config (relative to where training ran): as it is when it
    exists, else relative to the run directory's parent (``caloforge train --output RUN``)."""
    if not path:
        return None
    p = Path(path)
    if p.exists() or p.is_absolute():
        return str(p)
    alt = run.resolve().parent / p
    return str(alt) if alt.exists() else str(p)


def _history(run: Path) -> list[dict[str, Any]]:
    """The run's metrics rows, one per epoch (the last row of an epoch written twice)."""
    mfile = run / "metrics.jsonl"
    if not mfile.is_file():
        return []
    rows: dict[int, dict[str, Any]] = {}
    for line in mfile.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            rows[int(row.get("epoch", 0))] = row
    return [rows[k] for k in sorted(rows)]


def _showers_seen(history: list[dict[str, Any]], epoch: int) -> int | None:
    """Real showers the generator of ``epoch`` was trained on: per epoch, samples/s x training
    seconds (= batches x batch x processes, as the trainer computes the rate)."""
    rows = [h for h in history if int(h.get("epoch", 0)) <= epoch]
    if not rows or any("samples_per_s" not in h or "train_seconds" not in h for h in rows):
        return None
    return int(sum(round(float(h["samples_per_s"]) * float(h["train_seconds"])) for h in rows))


def _lineage(config: dict[str, Any], run: Path, depth: int = 0) -> dict[str, Any] | None:
    """Where a run started from (``--init-generator``): that generator file, its run's epoch
    and the showers it had seen (following earlier initialisations, up to 8 runs back)."""
    init = _resolve(config.get("init_generator"), run)
    if not init or depth >= 8:
        return None
    path = Path(init)
    out: dict[str, Any] = {"path": config["init_generator"], "showers_seen": None}
    if not path.is_file():
        out["note"] = "file not available at export"
        return out
    meta = read_metadata(path)
    parent_cfg = json.loads(meta.get("config", "{}"))
    epoch = int(json.loads(meta.get("epoch", "0")))
    parent_run = path.parent.parent if path.parent.name == "generators" else path.parent
    out["epoch"] = epoch
    out["showers_seen"] = _showers_seen(_history(parent_run), epoch)
    before = _lineage(parent_cfg, parent_run, depth + 1)
    if before is not None:
        out["initialised_from"] = before
        if out["showers_seen"] is not None and before.get("showers_seen_total") is not None:
            out["showers_seen_total"] = out["showers_seen"] + before["showers_seen_total"]
    else:
        out["showers_seen_total"] = out["showers_seen"]
    return out


def _library_fields(gen: Any, config: dict[str, Any], data: str | None, run: Path
                    ) -> dict[str, Any] | None:
    """The layer-energy library of a phase generator: size and where it came from."""
    layers = getattr(gen, "layers", None)
    if layers is None:
        return None
    k, m, _ = (int(v) for v in layers.table.shape)
    counts = layers.counts.detach().cpu().numpy()
    own = config.get("layer_library")
    return {"knots": k, "entries": m, "events": int(counts.sum()),
            "energy_range_gev": [float(f"{np.exp(float(layers.knots[0])):.6g}"),
                                 float(f"{np.exp(float(layers.knots[-1])):.6g}")],
            "source": _resolve(own, run) if own else data,
            "source_kind": "--layer-library file" if own else "the training data",
            "latent_numbers": int(gen.latent_dim) - PHASE_LATENT_DIM,
            "per_entry": ["layer energies / E"] + (
                ["hits above the cell threshold per layer", "radial width^2 per layer"]
                if getattr(layers, "stats", False) else [])}


def export_default(run_dir: str | os.PathLike[str], epoch: int | None = None,
                   test_data: str | None = None, floor_data: str | None = None,
                   reproduce: str | None = None, dest: str | os.PathLike[str] | None = None,
                   max_events: int | None = None, note: str | None = None,
                   validation_dir: str | os.PathLike[str] | None = None,
                   classifier: bool = True, keep_reference: bool = True,
                   calibrate_with: str | Sequence[str] | None = None,
                   calibration_passes: int = 6, calibration_match: str = "auto",
                   library_files: str | Sequence[str] | None = None,
                   library_entries: int = 1280
                   ) -> dict[str, Any]:
    """Install ``run_dir``'s best generator (or that of ``epoch``) into ``dest`` (default:
    :func:`caloforge.gan.shipped.default_dir`, the package's ``default/`` unless
    ``CALOFORGE_DEFAULT_MODEL_DIR`` says otherwise); returns the card. With ``test_data`` the
    card gets ``caloforge validate``'s verdict against it (floor: ``floor_data``, else simulated
    at its energies); ``validation_dir`` keeps that validation's report and plots.
    ``keep_reference``: when a non-3DGAN model replaces the package's 3DGAN default, copy the
    3DGAN to the package's ``reference/`` first (:func:`_keep_reference`). ``calibrate_with``: an
    MC file (not ``test_data``) the sparse prior is calibrated against before the export
    (:func:`caloforge.gan.calibrate.calibrate_prior`, ``calibration_passes`` passes of mode
    ``calibration_match``; ``"auto"``: ``"layer"`` for a generator with the layer-energy coupling,
    else ``"shape"``); the card records it. ``library_files``: MC files whose events replace
    a phase generator's layer-energy library, after the calibration
    (:func:`caloforge.gan.layers.build_library`, the same knots, up to ``library_entries`` events per knot; docs/gan.md: with 256 entries per
    knot 59% of 10k showers at uniform energies shared their layer-energy vector with another)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise UserError(f"{run}: no such run directory")
    src = run / "best.safetensors" if epoch is None else run / "generators" / f"epoch-{epoch:04d}.safetensors"
    if not src.is_file():
        raise UserError(f"{src}: no such generator file in the run"
                        + ("" if epoch is None else " (was that epoch trained?)"))
    calibration_files = ([] if calibrate_with is None else [str(calibrate_with)]
                         if isinstance(calibrate_with, (str, os.PathLike))
                         else [str(c) for c in calibrate_with])
    if calibration_files:
        from caloforge.gan.calibrate import check_settings

        check_settings(calibration_match, calibration_passes,
                       ("calibration_match", "calibration_passes"))
    library_files = ([str(library_files)] if isinstance(library_files, (str, os.PathLike))
                     else [str(c) for c in library_files or []])
    if library_files and (isinstance(library_entries, bool) or not isinstance(library_entries, int)
                          or library_entries < 1):
        raise UserError(f"library_entries {library_entries!r}: expected an integer >= 1")
    for what, path in (("test_data", test_data), ("floor_data", floor_data),
                       *(("calibrate_with", c) for c in calibration_files),
                       *(("library_files", c) for c in library_files)):
        if path is not None and not Path(path).is_file():
            raise UserError(f"{path}: no such file ({what})")
    for kind, files, advice in (("calibration", calibration_files, "calibrate with"),
                                ("library", library_files, "use")):
        for c in files:
            if test_data is not None and Path(c).resolve() == Path(test_data).resolve():
                raise UserError(f"{c}: the {kind} file is the test data; {advice} an "
                                "independent MC sample")
    gen = load_generator(src)
    calibration = None
    if calibration_files:
        from caloforge.gan.calibrate import calibrate_prior, resolve_match

        calibration_match = resolve_match(calibration_match, gen)
        offsets = calibrate_prior(gen, calibration_files,  # type: ignore[arg-type]
                                  passes=calibration_passes, match=calibration_match)
        calibration = {"files": calibration_files, "passes": calibration_passes,
                       "match": calibration_match, "probit_offset_per_pass": offsets}
        with contextlib.suppress(CaloforgeError):
            calibration["mc_seeds"] = [_mc_seed(c)[0] for c in calibration_files]
    if library_files:  # after the calibration: it calibrates a generator without the rules
        _replace_library(gen, library_files, library_entries)
    meta = read_metadata(src)
    config = json.loads(meta.get("config", "{}"))
    exported_epoch = int(json.loads(meta.get("epoch", "0")))
    e_range = json.loads(meta.get("energy_range_gev", "[2.0, 500.0]"))
    history = _history(run)
    row = next((h for h in history if h.get("epoch") == exported_epoch), {})
    hardware = None
    ck = sorted((run / "checkpoints").glob("epoch-*.json"))
    if ck:
        hardware = json.loads(ck[-1].read_text()).get("hardware")
    data = _resolve(config.get("data"), run)

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
                     "showers_seen": _showers_seen(history, exported_epoch),
                     "device": config.get("device"),
                     "hardware": hardware,
                     "validation_metric_at_epoch": row.get("val_metric"),
                     "validation_score_at_epoch": row.get("val_score")},
    }
    lineage = _lineage(config, run)
    if lineage is not None:
        seen = card["training"]["showers_seen"]
        card["training"]["initialised_from"] = lineage
        card["training"]["showers_seen_including_initialisation"] = (
            None if seen is None or lineage.get("showers_seen_total") is None
            else seen + lineage["showers_seen_total"])
    if calibration is not None:
        card["calibration"] = calibration
    library = _library_fields(gen, config, data, run)
    if library is not None and library_files:
        library.update(source=library_files, source_kind="--export-library files")
    if library is not None:
        card["layer_library"] = library
    nominal = _nominal_range(data)
    if nominal is not None and nominal[0] <= e_range[0] and e_range[1] <= nominal[1]:
        e_range = nominal  # the data set's nominal spectrum (e.g. uniform 2-500), not its extremes
        card["energy_range_gev"] = [float(e_range[0]), float(e_range[1])]
    if data:
        try:
            seed, n, generator = _mc_seed(data)
            used = n if config.get("max_events") is None else min(n, int(config["max_events"]))
            card["data_set"] = {"path": config["data"], "events_in_file": n, "events_used": used,
                                "energy_range_gev": [float(e_range[0]), float(e_range[1])],
                                "mc_seed": seed, "generator": generator}
            card["training"]["distinct_events"] = used
        except CaloforgeError:
            card["data_set"] = {"path": config["data"], "note": "file not available at export"}
    if test_data:
        from caloforge.gan.card_validation import validate_generator

        v = validate_generator(gen, test_data, floor_data, max_events, validation_dir,
                               classifier=classifier, plots=validation_dir is not None)
        with contextlib.suppress(CaloforgeError):
            v["mc_seeds"] = [_mc_seed(test_data)[0]] + ([_mc_seed(floor_data)[0]]
                                                        if floor_data else [])
        card["validation"] = v
        card["metric"] = {**v["shape_metric"], "reference": str(test_data),
                          "n_events": v["n_events"].get("candidate"),
                          "noise_seed": v["noise_seed"],
                          "cell_threshold_gev": v["cell_threshold_gev"]}
        if v.get("floor_shape_metric"):
            card["mc_floor"] = {**v["floor_shape_metric"], "reference": str(test_data),
                                "other": v["floor"], "n_other": v["n_events"].get("floor")}
    if reproduce:
        card["reproduce"] = reproduce
    if note:
        card["note"] = note
    out = Path(dest) if dest is not None else default_dir()
    if keep_reference:
        card_note = _keep_reference(out, card["architecture"])
        if card_note:
            card["replaced"] = card_note
    _install(gen, card, {"epoch": exported_epoch, "energy_range_gev": e_range,
                         "architecture": card["architecture"], "config": config}, out)
    return card


def _replace_library(gen: Any, files: list[str], entries: int) -> None:
    """``gen.layers`` := a library of ``files`` (:func:`caloforge.gan.layers.build_library`), which
    must give the model's grid and its library energies (the same knots)."""
    from caloforge.gan.layers import build_library, sampler_from

    if getattr(gen, "layers", None) is None:
        raise UserError("library_files: the generator has no layer-energy library")
    old = gen.layers
    knots, layers = int(old.table.shape[0]), int(old.table.shape[2])
    lib = build_library(files, float(gen.cell_threshold_gev), knots=knots, entries=entries)
    names = ", ".join(files)
    if lib["table"].shape[2] != layers:
        raise UserError(f"{names}: {lib['table'].shape[2]} layers; the generator has {layers}")
    own = old.knots.cpu().numpy()
    if lib["table"].shape[0] != knots or not np.allclose(lib["knots"], own, atol=1e-4):
        have, want = np.exp(lib["knots"][[0, -1]]), np.exp(own[[0, -1]])
        raise UserError(f"{names}: {lib['table'].shape[0]} library energies {have[0]:.4g}-"
                        f"{have[1]:.4g} GeV; the generator's library has {knots} at "
                        f"{want[0]:.4g}-{want[1]:.4g} GeV (simulate the files at those energies)")
    gen.layers = sampler_from(lib)


def _keep_reference(out: Path, architecture: str) -> str | None:
    """Before another architecture replaces the package's 3DGAN default, copy the 3DGAN's three
    files to :data:`~caloforge.gan.shipped.REFERENCE_DIR` (the case study's model stays in the
    package; tests and benchmarks of the reference run it); returns a note for the card."""
    if architecture == "3dgan" or out.resolve() != PACKAGE_DIR.resolve():
        return None
    if reference_3dgan_dir() != PACKAGE_DIR or (REFERENCE_DIR / CARD_NAME).exists():
        return None
    tmp = REFERENCE_DIR.with_name(f".{REFERENCE_DIR.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name in (WEIGHTS_NAME, ONNX_NAME, CARD_NAME):
        shutil.copy2(out / name, tmp / name)
    if REFERENCE_DIR.exists():  # an empty or partial folder: replace it
        shutil.rmtree(REFERENCE_DIR)
    os.replace(tmp, REFERENCE_DIR)
    return (f"replaced the reference 3DGAN as the default; the 3DGAN is kept in "
            f"caloforge/gan/{REFERENCE_DIR.name}/")


def _install(gen: Any, card: dict[str, Any], metadata: dict[str, Any], out: Path) -> None:
    """Write the three files into a staging folder inside ``out``, then move them into place,
    the card last: a failed export (e.g. of the ONNX graph) leaves the installed model as it
    was, and the weights, graph and card are replaced within milliseconds of each other."""
    make_output_dir(out, "model directory")
    stage = out / f".export-{os.getpid()}"
    stage.mkdir(exist_ok=True)
    try:
        save_generator(gen, stage / WEIGHTS_NAME, metadata)
        export_onnx(gen, stage / ONNX_NAME)
        card["onnx_parity_rel_l2"] = _onnx_parity(gen, stage / ONNX_NAME)
        write_json(stage / CARD_NAME, card)
        for name in (WEIGHTS_NAME, ONNX_NAME, CARD_NAME):
            os.replace(stage / name, out / name)
    finally:
        for leftover in stage.glob("*"):
            leftover.unlink()
        stage.rmdir()


def summary_lines(card: dict[str, Any]) -> list[str]:
    """What ``caloforge train --export-default`` prints: the model, its source and the verdict."""
    src = card.get("source", {})
    lines = [f"installed {card.get('architecture')} generator (latent {card.get('latent_dim')}) "
             f"from {src.get('run_dir')}/{src.get('file')} (epoch {src.get('epoch')})"]
    if card.get("replaced"):
        lines.append(card["replaced"])
    cal = card.get("calibration")
    if cal:
        lines.append(f"prior calibrated against {', '.join(cal['files'])} ({cal['passes']} passes; "
                     f"probit offset {cal['probit_offset_per_pass'][0]:.3f} -> "
                     f"{cal['probit_offset_per_pass'][-1]:.3f})")
    v = card.get("validation")
    if v:
        lines.append(f"verdict vs {v['reference']} ({v['n_events'].get('candidate')} events): "
                     f"{v['verdict']}")
    return lines


def _architecture_fields(gen: Any) -> dict[str, Any]:
    """Card fields that say which architecture the generator is and how its output is made."""
    if isinstance(gen, PhaseGenerator):
        lib = ("; layer energies drawn from an MC layer-energy library (caloforge.gan.layers)"
               if getattr(gen, "layers", None) is not None else "")
        if gen.sparse:
            lib += "; sparse occupancy/energy head (caloforge.gan.sparse)"
        if gen.layer_occupancy:
            lib += "; occupancy coupled to the layer energies"
        if getattr(gen.layers, "stats", False) and gen.sparse:
            lib += ("; each layer's hit count and radial width from the library entry "
                    "(caloforge.gan.layer_rules)")
        return {"model": "phase generator (caloforge.gan.phase.PhaseGenerator: sub-pixel "
                         "transposed convolutions, log cell energies, per-cell noise inputs"
                         + lib + ")",
                "architecture": "phase",
                "cell_threshold_gev": float(f"{float(gen.cell_threshold_gev):.7g}"),  # float32
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
