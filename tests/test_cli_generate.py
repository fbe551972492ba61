"""``caloforge generate``: output layout, refusals (exit 2), no file after an interruption."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from caloforge.cli import main
from caloforge.data import read_showers


def test_generate_writes_3dgan_layout(tmp_path: Path) -> None:
    out = tmp_path / "gan.h5"
    rc = main(["generate", "--energies", "10,50,100", "-n", "7", "--streams", "1",
               "--batch-size", "4", "--seed", "5", "-o", str(out), "--quiet"])
    assert rc == 0
    images, energies = read_showers(out)
    assert images.shape == (7, 25, 25, 25)
    assert np.allclose(energies, [10, 50, 100, 10, 50, 100, 10])
    # same seed, other layout -> identical file content
    out2 = tmp_path / "gan2.h5"
    assert main(["generate", "--energies", "10,50,100", "-n", "7", "--streams", "2",
                 "--threads", "1", "--batch-size", "3", "--seed", "5", "-o", str(out2),
                 "--quiet"]) == 0
    assert np.array_equal(read_showers(out2)[0], images)


def test_generate_energy_range(tmp_path: Path) -> None:
    out = tmp_path / "r.h5"
    assert main(["generate", "--energy-range", "20:40", "-n", "5", "--streams", "1",
                 "-o", str(out), "--quiet"]) == 0
    _, e = read_showers(out)
    assert ((e >= 20) & (e <= 40)).all() and len(set(e.tolist())) == 5


@pytest.mark.parametrize("args", [
    ["--energies", "10,nan"], ["--energies", "-3"], ["--energies", "800"],
    ["--energy-range", "1:600"], ["--energies", "abc"],
])
def test_generate_bad_energies_exit_2(tmp_path: Path, args: list[str],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.h5"
    assert main(["generate", *args, "-n", "3", "--streams", "1", "-o", str(out)]) == 2
    assert "error" in capsys.readouterr().err
    assert not out.exists()


def test_generate_extrapolation_allowed(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    out = tmp_path / "x.h5"
    assert main(["generate", "--energies", "700", "-n", "2", "--streams", "1", "-o", str(out),
                 "--allow-extrapolation", "--quiet"]) == 0
    assert "warning" in capsys.readouterr().err and out.exists()


def test_generate_bad_model_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "m.onnx"
    bad.write_bytes(b"garbage" * 10)
    assert main(["generate", "--energies", "10", "-n", "2", "--model", str(bad),
                 "--streams", "1", "-o", str(tmp_path / "o.h5")]) == 2
    assert not (tmp_path / "o.h5").exists()


def test_interrupted_generate_leaves_no_file(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from caloforge.runtime import openvino_backend

    generate_module = importlib.import_module("caloforge.runtime.generate")

    monkeypatch.setattr(generate_module, "CHUNK_EVENTS", 8)

    calls = {"n": 0}
    real_run = openvino_backend.OpenVINOGenerator.run

    def flaky_run(self, *a, **k):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_run(self, *a, **k)

    monkeypatch.setattr(openvino_backend.OpenVINOGenerator, "run", flaky_run)
    out = tmp_path / "int.h5"
    rc = main(["generate", "--energies", "50", "-n", "40", "--streams", "1", "--batch-size", "8",
               "-o", str(out), "--quiet"])
    monkeypatch.undo()
    assert rc == 130
    assert calls["n"] == 2
    assert list(tmp_path.iterdir()) == []
