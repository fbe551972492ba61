"""Model files: IR save/load round trip with manifest, corrupt and wrong model files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from caloforge.errors import UserError
from caloforge.gan.shipped import default_onnx_path
from caloforge.runtime import (
    Calibration,
    compile_model,
    latent_noise,
    load_model,
    quantize_int8,
    save_model,
)
from caloforge.runtime.modelfile import manifest_path, sha256_file


def _run(model, precision: str) -> np.ndarray:  # type: ignore[no-untyped-def]
    z = latent_noise(1, 0, 6)
    e = np.array([5.0, 20.0, 80.0, 150.0, 300.0, 480.0], np.float32)
    return compile_model(model, precision, streams=1, batch_size=6).run(z, e)


def test_int8_ir_round_trip(tmp_path: Path) -> None:
    cal = Calibration(samples=16)
    q = quantize_int8(None, cal)
    path = save_model(q, tmp_path / "gen_int8.xml", precision="int8",
                      source_sha256=sha256_file(default_onnx_path()),
                      energy_range_gev=(2.0, 500.0), calibration=cal.as_dict())
    man = json.loads(manifest_path(path).read_text())
    assert man["precision"] == "int8" and man["calibration"]["samples"] == 16
    assert set(man["files"]) == {"gen_int8.xml", "gen_int8.bin"}
    assert man["source_sha256"] == sha256_file(default_onnx_path())
    loaded = load_model(path)
    assert loaded.precision == "int8" and loaded.energy_range_gev == (2.0, 500.0)
    assert np.array_equal(_run(q, "int8"), _run(str(path), "int8"))
    # a quantized model cannot be run as float
    with pytest.raises(UserError, match="quantized"):
        compile_model(str(path), "fp32")


def test_fp32_ir_and_onnx_round_trip(tmp_path: Path) -> None:
    loaded = load_model(None)
    xml = save_model(loaded, tmp_path / "gen.xml", precision="fp32")
    onnx = save_model(loaded, tmp_path / "gen.onnx", precision="fp32")
    ref = _run(None, "fp32")
    assert np.array_equal(_run(str(xml), "fp32"), ref)
    assert np.array_equal(_run(str(onnx), "fp32"), ref)
    assert load_model(onnx).manifest["energy_range_gev"] == [2.0, 500.0]


def test_corrupt_ir_detected_by_manifest(tmp_path: Path) -> None:
    xml = save_model(load_model(None), tmp_path / "gen.xml", precision="fp32")
    binf = xml.with_suffix(".bin")
    data = binf.read_bytes()
    binf.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"gen\.bin.*checksum"):
        load_model(xml)
    binf.unlink()
    with pytest.raises(UserError, match="missing"):
        load_model(xml)


@pytest.mark.parametrize("kind", ["garbage", "truncated", "empty"])
def test_bad_onnx_files(tmp_path: Path, kind: str) -> None:
    p = tmp_path / "bad.onnx"
    src = default_onnx_path().read_bytes()
    p.write_bytes({"garbage": b"\x00\x13not a model at all" * 50,
                   "truncated": src[: len(src) // 3], "empty": b""}[kind])
    with pytest.raises(UserError, match=r"bad\.onnx"):
        compile_model(str(p), "fp32")


def test_wrong_interface_and_paths(tmp_path: Path) -> None:
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter([-1, 10], np.float32, name="x")
    m = ov.Model([ops.relu(x)], [x], "other")
    p = tmp_path / "other.xml"
    ov.save_model(m, str(p))
    with pytest.raises(UserError, match=r"other\.xml.*not a caloforge generator"):
        load_model(p)
    with pytest.raises(UserError, match="no such model file"):
        load_model(tmp_path / "missing.onnx")
    txt = tmp_path / "model.txt"
    txt.write_text("hi")
    with pytest.raises(UserError, match="unknown model format"):
        load_model(txt)
    with pytest.raises(UserError, match="safetensors"):
        compile_model(str(txt), "fp32", backend="torch")
