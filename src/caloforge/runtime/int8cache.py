"""INT8 quantized once per model: the quantized IR is cached in a user cache directory.

``compile_model(path, "int8")`` calibrates and quantizes a float model with NNCF (seconds to
minutes). The result depends only on the model's bytes, the calibration settings and the
OpenVINO / NNCF / caloforge versions, so it is saved once, as OpenVINO IR with a caloforge
manifest (:func:`caloforge.runtime.modelfile.save_model`: files written atomically, manifest
last), under ``$CALOFORGE_CACHE`` (else ``$XDG_CACHE_HOME/caloforge``, else
``~/.cache/caloforge``) in ``int8/<key>/model.xml``, ``key`` = sha256 of the model's sha256 and
those settings. A cached model whose files do not match their manifest (truncated, replaced) or
that OpenVINO cannot read is removed and quantized again. ``CALOFORGE_CACHE=off`` disables it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from caloforge.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import openvino as ov

    from caloforge.runtime.modelfile import LoadedModel
    from caloforge.runtime.quantize import Calibration

CACHE_ENV = "CALOFORGE_CACHE"
MODEL_NAME = "model.xml"


def cache_dir() -> Path | None:
    """The cache root, or None when ``CALOFORGE_CACHE`` is ``off`` / ``0`` / empty."""
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        if value.strip().lower() in ("", "0", "off", "none", "false"):
            return None
        return Path(value).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "caloforge"


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    from caloforge import __version__

    out = {"caloforge": __version__}
    for dist in ("openvino", "nncf"):  # metadata only: importing nncf alone takes ~2 s
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:  # pragma: no cover
            out[dist] = "none"
    return out


def cache_key(model_sha256: str, calibration: Calibration, optimize: bool) -> str:
    """sha256 of what the quantized model depends on (the rewrites' version included)."""
    from caloforge.ovgraph.calibrate import RECIPE_VERSION
    from caloforge.ovgraph.rewrites import REWRITES_VERSION

    blob = json.dumps({"model_sha256": model_sha256, "calibration": calibration.as_dict(),
                       "optimize": optimize, "rewrites": REWRITES_VERSION if optimize else 0,
                       "recipe": RECIPE_VERSION,
                       **_versions()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def model_sha256(loaded: LoadedModel) -> str | None:
    """sha256 of the model's files (None for a model that only lives in memory)."""
    from caloforge.runtime.modelfile import model_files

    if loaded.path is None:
        return None
    if loaded.path.suffix.lower() == ".onnx" and loaded.source_sha256:
        return loaded.source_sha256
    from caloforge.data.manifest import sha256_file

    h = hashlib.sha256()
    for f in model_files(loaded.path):
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def _read_cached(path: Path) -> ov.Model | None:
    from caloforge.ovgraph import is_quantized
    from caloforge.runtime.modelfile import read_ov_model

    if not path.is_file():
        return None
    try:
        model = read_ov_model(path).model
        if is_quantized(model):
            return model
    except (UserError, RuntimeError, OSError):
        pass
    warnings.warn(f"{path}: corrupt cached INT8 model; quantizing again", RuntimeWarning,
                  stacklevel=3)
    with contextlib.suppress(OSError):
        shutil.rmtree(path.parent)
    return None


def quantized(loaded: LoadedModel, calibration: Calibration, optimize: bool,
              info: dict[str, Any]) -> ov.Model:
    """The full-INT8 model of float ``loaded`` (rewrites first when ``optimize``): from the
    cache when there, else quantized now and cached. ``info["int8_cache"]`` says which."""
    from caloforge.ovgraph import optimize_model
    from caloforge.runtime.modelfile import save_model
    from caloforge.runtime.quantize import quantize_int8

    root, sha = cache_dir(), model_sha256(loaded)
    path = None
    if root is not None and sha is not None:
        path = root / "int8" / cache_key(sha, calibration, optimize) / MODEL_NAME
        model = _read_cached(path)
        if model is not None:
            info["int8_cache"] = {"hit": True, "path": str(path)}
            return model
    model = loaded.model
    if optimize:
        model, info["folded_layers"] = optimize_model(model)
    model = quantize_int8(model, calibration, optimize=False)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_model(model, path, precision="int8", source_sha256=loaded.source_sha256,
                       energy_range_gev=loaded.energy_range_gev,
                       calibration=calibration.as_dict(),
                       extra={"architecture": loaded.architecture,
                              "cell_threshold_gev": loaded.cell_threshold_gev,
                              "int8_cache_of": sha})
            info["int8_cache"] = {"hit": False, "path": str(path)}
        except (OSError, UserError) as exc:  # a read-only home must not stop a run
            info["int8_cache"] = {"hit": False, "error": str(exc)}
    return model


__all__ = ["CACHE_ENV", "cache_dir", "cache_key", "model_sha256", "quantized"]
