"""Model files for inference: ONNX and OpenVINO IR (.xml + .bin), each with an optional
manifest ``<file name>.manifest.json`` written beside it.

The manifest records what the file is — precision, the sha256 of the source ONNX it was made
from, the sha256 of every file of the model, the INT8 calibration settings, the caloforge
version and the energy range the generator was trained on. :func:`load_model` checks the files
against it, and checks that the graph is a caloforge generator (inputs ``z`` (B, L) with a
static latent size L — 200 for the 3DGAN, 3151 for the ``phase`` architecture — and ``energy``
(B,), output ``showers`` (B, 25, 25, 25)). The manifest also carries ``latent_dim``,
``architecture`` and ``cell_threshold_gev`` (below it the runtime writes exact zeros). Every
problem is a :class:`~caloforge.errors.UserError` naming the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from caloforge.atomic import write_json
from caloforge.data.manifest import sha256_file
from caloforge.errors import UserError
from caloforge.facts import CELL_THRESHOLD_GEV, IMAGE_SHAPE, LATENT_DIM
from caloforge.ovgraph import is_quantized, read_model

if TYPE_CHECKING:  # pragma: no cover
    import openvino as ov

MANIFEST_FORMAT = "caloforge-model"
MANIFEST_VERSION = 1
INPUT_Z, INPUT_ENERGY, OUTPUT = "z", "energy", "showers"


def manifest_path(model_path: str | os.PathLike[str]) -> Path:
    """``dir/gen.xml`` -> ``dir/gen.xml.manifest.json`` (one per model file, so ``gen.onnx`` and
    ``gen.xml`` side by side do not share one)."""
    p = Path(model_path)
    return p.with_name(p.name + ".manifest.json")


def model_files(model_path: str | os.PathLike[str]) -> list[Path]:
    p = Path(model_path)
    return [p, p.with_suffix(".bin")] if p.suffix.lower() == ".xml" else [p]


@dataclass
class LoadedModel:
    """An OpenVINO model read from a file: ``model`` (``openvino.Model``), ``path``,
    ``manifest`` (dict or None), ``precision`` (from the manifest, else ``int8`` when the graph
    holds FakeQuantize nodes, else ``fp32``), ``energy_range_gev`` (or None when unknown),
    ``latent_dim`` (from the graph's ``z`` input), ``architecture`` (``3dgan``, ``phase``, or
    None when unknown), ``cell_threshold_gev`` (None: not given by manifest or card)."""

    model: ov.Model
    path: Path | None
    manifest: dict[str, Any] | None = None
    precision: str = "fp32"
    energy_range_gev: tuple[float, float] | None = None
    source_sha256: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    latent_dim: int = LATENT_DIM
    architecture: str | None = None
    cell_threshold_gev: float | None = None

    @property
    def threshold_gev(self) -> float:
        """The cell threshold the runtime applies: the model's own, else the 3DGAN default."""
        return CELL_THRESHOLD_GEV if self.cell_threshold_gev is None else self.cell_threshold_gev


ModelSource: TypeAlias = "ov.Model | LoadedModel | str | os.PathLike[str] | None"
"""A generator as the OpenVINO backend takes it: an ``openvino.Model``, a :class:`LoadedModel`,
a path (.onnx / .xml), or ``None`` (the shipped model)."""


def check_interface(model: ov.Model, where: str) -> int:
    """Raise UserError unless ``model`` has the generator's inputs and output; returns the
    latent size (the static second dimension of ``z``)."""
    inputs = {}
    for port in model.inputs:
        for name in port.get_names():
            inputs[name] = port.get_partial_shape()
    outputs = {}
    for port in model.outputs:
        for name in port.get_names():
            outputs[name] = port.get_partial_shape()
    problems = []
    if set(inputs) - {INPUT_Z, INPUT_ENERGY} or len(model.inputs) != 2:
        problems.append(f"inputs {sorted(inputs)} (expected 'z' and 'energy')")
    else:
        zs, es = inputs.get(INPUT_Z), inputs.get(INPUT_ENERGY)
        if zs is None or es is None:
            problems.append(f"inputs {sorted(inputs)} (expected 'z' and 'energy')")
        else:
            if zs.rank.is_dynamic or zs.rank.get_length() != 2 or zs[1].is_dynamic \
                    or zs[1].get_length() < 1:
                problems.append(f"input 'z' has shape {zs} (expected [?,L] with a fixed "
                                f"latent size L, e.g. {LATENT_DIM})")
            if es.rank.is_dynamic or es.rank.get_length() != 1:
                problems.append(f"input 'energy' has shape {es} (expected [?])")
    if len(model.outputs) != 1 or OUTPUT not in outputs:
        problems.append(f"outputs {sorted(outputs)} (expected 'showers')")
    else:
        os_ = outputs[OUTPUT]
        if os_.rank.is_dynamic or os_.rank.get_length() != 4 or any(
            d.is_dynamic or d.get_length() != n for d, n in zip(list(os_)[1:], IMAGE_SHAPE,
                                                                 strict=False)
        ):
            problems.append(f"output 'showers' has shape {os_} (expected [?,25,25,25])")
    if problems:
        raise UserError(f"{where}: not a caloforge generator: " + "; ".join(problems))
    return int(inputs[INPUT_Z][1].get_length())


def read_manifest(model_path: Path) -> dict[str, Any] | None:
    mp = manifest_path(model_path)
    if not mp.exists():
        return None
    try:
        manifest = json.loads(mp.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{mp}: unreadable model manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise UserError(f"{mp}: not a caloforge model manifest")
    return manifest


def verify_manifest(model_path: Path, manifest: dict[str, Any]) -> None:
    files = manifest.get("files", {})
    for f in model_files(model_path):
        want = files.get(f.name)
        if want is None:
            raise UserError(f"{f}: not listed in its manifest {manifest_path(model_path).name}")
        if not f.exists():
            raise UserError(f"{f}: missing (listed in {manifest_path(model_path).name})")
        got = sha256_file(f)
        if got != want:
            raise UserError(
                f"{f}: checksum mismatch with {manifest_path(model_path).name} "
                f"(sha256 {got[:12]}..., manifest says {want[:12]}...): corrupt or replaced file"
            )


def read_ov_model(path: str | os.PathLike[str] | None) -> LoadedModel:
    """Read and check an ONNX or IR generator (``None``: the shipped ONNX)."""
    from caloforge.gan.shipped import default_model_card, default_onnx_path

    shipped = path is None
    p = default_onnx_path() if path is None else Path(path)
    if not p.exists():
        raise UserError(f"{p}: no such model file")
    if p.is_dir():
        raise UserError(f"{p}: is a directory, expected an .onnx or .xml model file")
    suffix = p.suffix.lower()
    if suffix not in (".onnx", ".xml"):
        raise UserError(f"{p}: unknown model format (expected .onnx or OpenVINO IR .xml)")
    if suffix == ".xml" and not p.with_suffix(".bin").exists():
        raise UserError(f"{p}: its weights file {p.with_suffix('.bin').name} is missing")
    manifest = read_manifest(p)
    if manifest is not None:
        verify_manifest(p, manifest)
    model = read_model(p)
    latent = check_interface(model, str(p))
    quantized = is_quantized(model)
    if manifest is not None:
        precision = str(manifest.get("precision", "fp32"))
        meta: dict[str, Any] = manifest
    else:
        precision = "int8" if quantized else "fp32"
        meta = default_model_card() if shipped else {}
    if precision == "int8" and not quantized:
        raise UserError(f"{p}: manifest says int8 but the model holds no quantized layers")
    rng = meta.get("energy_range_gev")
    want = meta.get("latent_dim")
    if want is not None and int(want) != latent:
        raise UserError(f"{p}: the graph's latent input z has {latent} values but its "
                        f"{'manifest' if manifest else 'model card'} says latent_dim {want}")
    return LoadedModel(
        model=model, path=p, manifest=manifest, precision=precision,
        energy_range_gev=(float(rng[0]), float(rng[1])) if rng else None,
        source_sha256=(manifest or {}).get("source_sha256") or (
            sha256_file(p) if suffix == ".onnx" else None),
        extra={"shipped": shipped}, latent_dim=latent,
        architecture=meta.get("architecture") or ("3dgan" if latent == LATENT_DIM else None),
        cell_threshold_gev=_threshold(meta, p),
    )


def _threshold(meta: dict[str, Any], where: Path) -> float | None:
    value = meta.get("cell_threshold_gev")
    if value is None:
        return None
    try:
        t = float(value)
    except (TypeError, ValueError):
        t = float("nan")
    if not 0.0 <= t < 1.0:  # a cell threshold of 1 GeV or more would erase whole showers
        raise UserError(f"{where}: cell_threshold_gev {value!r} in its manifest/card is not a "
                        "threshold in [0, 1) GeV")
    return t


def model_precision(path: str | os.PathLike[str] | None) -> str:
    """The precision a model file is made for, without compiling it: its manifest's, else
    ``int8`` for an IR holding FakeQuantize nodes, else ``fp32`` (the shipped model: fp32)."""
    if path is None:
        return "fp32"
    p = Path(path)
    if not p.is_file():
        return "fp32"  # read_ov_model reports the problem
    manifest = read_manifest(p)
    if manifest is not None:
        return str(manifest.get("precision", "fp32"))
    if p.suffix.lower() == ".xml":
        try:
            return "int8" if 'type="FakeQuantize"' in p.read_text(errors="replace") else "fp32"
        except OSError:
            return "fp32"
    return "fp32"


def build_manifest(
    files: list[Path], precision: str, *, source_sha256: str | None,
    energy_range_gev: tuple[float, float] | None, calibration: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None, latent_dim: int = LATENT_DIM,
    architecture: str | None = None, cell_threshold_gev: float | None = None,
) -> dict[str, Any]:
    from caloforge import __version__

    return {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "precision": precision,
        "source_sha256": source_sha256,
        "files": {f.name: sha256_file(f) for f in files},
        "calibration": calibration,
        "energy_range_gev": list(energy_range_gev) if energy_range_gev else None,
        "latent_dim": int(latent_dim),
        "architecture": architecture,
        "cell_threshold_gev": cell_threshold_gev,
        "inputs": {INPUT_Z: ["batch", int(latent_dim)], INPUT_ENERGY: ["batch"]},
        "outputs": {OUTPUT: ["batch", *IMAGE_SHAPE]},
        "caloforge_version": __version__,
        **(extra or {}),
    }


def save_model(
    model: ov.Model | LoadedModel, path: str | os.PathLike[str], *, precision: str,
    source_sha256: str | None = None, energy_range_gev: tuple[float, float] | None = None,
    calibration: dict[str, Any] | None = None, source_onnx: str | os.PathLike[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Save a model with its manifest; returns the model path.

    ``path`` ending in ``.xml``: ``model`` (an ``openvino.Model``, or a :class:`LoadedModel`) is
    written as OpenVINO IR (weights kept in f32; quantized models keep their FakeQuantize).
    ``path`` ending in ``.onnx``: the ``source_onnx`` file is copied (ONNX cannot be written
    from OpenVINO); use this for fp32/bf16 models. All files are written atomically: the model
    files first, the manifest last, so a manifest always describes complete files.
    """
    import openvino as ov

    meta: dict[str, Any] = {}
    if isinstance(model, LoadedModel):
        source_sha256 = source_sha256 or model.source_sha256
        energy_range_gev = energy_range_gev or model.energy_range_gev
        if source_onnx is None and model.path is not None and model.path.suffix == ".onnx":
            source_onnx = model.path
        meta = {"architecture": model.architecture,
                "cell_threshold_gev": model.cell_threshold_gev}
        model = model.model
    meta["latent_dim"] = check_interface(model, str(path))
    meta.update({k: v for k, v in (extra or {}).items() if k in meta})
    extra = {k: v for k, v in (extra or {}).items() if k not in meta}
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"{p}: output directory {parent} does not exist")
    suffix = p.suffix.lower()
    if suffix not in (".xml", ".onnx"):
        raise UserError(f"{p}: model files must end in .xml (OpenVINO IR) or .onnx")
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{p.name}.", dir=parent))
    try:
        if suffix == ".xml":
            tmp_xml = tmpdir / p.name
            ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
            files = [(tmp_xml.with_suffix(".bin"), p.with_suffix(".bin")), (tmp_xml, p)]
        else:
            if source_onnx is None:
                raise UserError(f"{p}: saving as ONNX needs the source ONNX file")
            if precision == "int8":
                raise UserError(f"{p}: a quantized model is saved as OpenVINO IR (.xml)")
            tmp = tmpdir / p.name
            shutil.copyfile(source_onnx, tmp)
            source_sha256 = source_sha256 or sha256_file(source_onnx)
            files = [(tmp, p)]
        manifest = build_manifest([t for t, _ in files], precision, source_sha256=source_sha256,
                                  energy_range_gev=energy_range_gev, calibration=calibration,
                                  extra=extra, **meta)
        for tmp, final in files:
            os.replace(tmp, final)
        write_json(manifest_path(p), manifest)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmpdir)
    return p
