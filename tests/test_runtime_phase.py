"""The runtime runs the ``phase`` architecture (latent 3151, transposed convolutions, exact
zeros): latent size read from the graph, the 3DGAN rewrites skipped, FP32 equal to PyTorch,
INT8 (NNCF) sane, the manifest fields, ``caloforge generate --model phase.onnx``."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from caloforge.cli import main
from caloforge.gan.export import export_onnx
from caloforge.gan.phase import PhaseGenerator
from caloforge.runtime import Calibration, compile_model, latent_noise, load_model, save_model


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def phase(tmp_path_factory) -> tuple[PhaseGenerator, Path]:
    torch.manual_seed(0)
    g = PhaseGenerator()
    with torch.no_grad():  # a non-trivial output, as in tests/test_gan_phase.py
        g.up2.weight.normal_(0.0, 0.3)
        g.up2.bias.fill_(0.0)
    g.eval()
    return g, export_onnx(g, tmp_path_factory.mktemp("phase") / "phase.onnx")


@pytest.fixture(scope="module")
def inputs(phase) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g, _ = phase
    z = latent_noise(4, 0, 16, g.latent_dim)
    e = np.linspace(2.0, 500.0, 16).astype(np.float32)
    with torch.no_grad():
        ref = g(torch.from_numpy(z), torch.from_numpy(e)).numpy()
    return z, e, ref


def test_latent_size_comes_from_the_graph_and_only_the_shuffle_rewrites_apply(phase) -> None:
    from caloforge.ovgraph import optimize_model

    g, path = phase
    loaded = load_model(path)
    assert loaded.latent_dim == g.latent_dim == 3151
    _, rewritten = optimize_model(loaded.model)
    # no upsample+conv or dense+conv pattern of the 3DGAN in it; the one rewritten layer is the
    # sub-pixel convolution of up2, narrowed to the 25^3 cells the generator keeps of its 28^3
    assert rewritten == ["/up2/Conv/WithoutBiases"]


def test_fp32_equals_pytorch_and_int8_is_sane(phase, inputs, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CALOFORGE_CACHE", str(tmp_path / "cache"))
    _, path = phase
    z, e, ref = inputs
    fp32 = compile_model(path, "fp32", streams=1, batch_size=8).run(z, e)
    assert rel_l2(fp32, ref) < 1e-5
    gen = compile_model(path, "int8", streams=1, batch_size=8,
                        calibration=Calibration(samples=32))
    from caloforge.ovgraph import runtime_precisions

    assert any(r.precision in ("i8", "u8") for r in runtime_precisions(gen.compiled))
    out = gen.run(z, e)
    assert np.isfinite(out).all() and (out >= 0).all()
    assert out[out > 0].min() >= 1e-6 * (1 - 1e-6)  # exact zeros or above the threshold
    # measured: rel. L2 0.13 and total energy 1.002x FP32 (200 calibration events)
    assert rel_l2(out, fp32) < 0.4
    assert out.sum() / fp32.sum() == pytest.approx(1.0, abs=0.1)


def test_manifest_carries_latent_architecture_and_threshold(phase, tmp_path) -> None:
    _, path = phase
    loaded = load_model(path)
    loaded.architecture, loaded.cell_threshold_gev = "phase", 2e-6
    saved = save_model(loaded, tmp_path / "p.onnx", precision="fp32")
    manifest = json.loads((tmp_path / "p.onnx.manifest.json").read_text())
    assert manifest["latent_dim"] == 3151 and manifest["architecture"] == "phase"
    assert manifest["inputs"]["z"] == ["batch", 3151]
    again = load_model(saved)
    assert again.cell_threshold_gev == 2e-6
    gen = compile_model(saved, "fp32", streams=1, batch_size=4)
    assert gen.cell_threshold_gev == 2e-6 and gen.latent_dim == 3151


def test_generate_cli_with_a_phase_model(phase, inputs, tmp_path) -> None:
    _, path = phase
    out = tmp_path / "ph.h5"
    assert main(["generate", "--model", str(path), "--energies", "2,500", "-n", "40",
                 "--seed", "4", "-o", str(out), "--quiet"]) == 0
    with h5py.File(out, "r") as h:
        x = h["ECAL"][:]
        assert x.shape == (40, 25, 25, 25) and h.attrs["cell_threshold_gev"] == 1e-6
    assert np.isfinite(x).all() and (x[x > 0] >= 1e-6 * (1 - 1e-6)).all()
    assert 0.05 < float((x > 0).mean()) < 0.95


def test_bench_times_a_phase_model_and_its_file_rate(phase) -> None:
    from caloforge.workflows import run_bench

    _, path = phase
    report = run_bench(True, model=path, batches=(8,), precisions=("fp32",), rounds=1,
                       sample_seconds=0.02, physics_events=24, mc_seconds=0.0, plain=False)
    assert {r.runtime for r in report.rows} == {"openvino"}  # no 3DGAN PyTorch weights for it
    (disk,) = report.end_to_end
    assert disk.precision == "fp32" and disk.events[1] == 3 * disk.events[0]
    assert disk.to_disk_showers_per_s > 0 and disk.engine_showers_per_s > 0
    assert report.physics["openvino-fp32"].rel_l2_vs_openvino_fp32 == 0.0


def test_a_faulty_int8_compile_is_compiled_again_then_refused(phase, tmp_path,
                                                             monkeypatch) -> None:
    """The check after an INT8 compile (docs/runtime.md): a compile whose output differs from
    the float model's is replaced by a new one; three such compiles end in a one-line error."""
    from caloforge.errors import UserError
    from caloforge.runtime.openvino_backend import (
        INT8_COMPILE_TRIES,
        INT8_PARITY_MAX_REL_L2,
        OpenVINOBackend,
    )

    monkeypatch.setenv("CALOFORGE_CACHE", str(tmp_path / "cache"))
    _, path = phase
    seen: list[int] = []
    real = OpenVINOBackend._parity

    def faulty_first(self, compiled, *args):  # type: ignore[no-untyped-def]
        seen.append(id(compiled))
        return 1.0 if len(seen) == 1 else real(self, compiled, *args)

    monkeypatch.setattr(OpenVINOBackend, "_parity", faulty_first)
    gen = compile_model(path, "int8", streams=1, batch_size=8,
                        calibration=Calibration(samples=32))
    assert gen.info["int8_compiles"] == 2 and len(set(seen)) == 2   # a new compiled model
    assert gen.info["int8_rel_l2_vs_f32"] <= INT8_PARITY_MAX_REL_L2
    monkeypatch.setattr(OpenVINOBackend, "_parity", lambda self, *a: 1.0)
    with pytest.raises(UserError, match=f"in {INT8_COMPILE_TRIES} compiles"):
        compile_model(path, "int8", streams=1, batch_size=8, calibration=Calibration(samples=32))
