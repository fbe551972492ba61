"""``caloforge bench`` with a tuned model: its rows, speed-up line and physics row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from caloforge.cli import main
from caloforge.runtime import Calibration, quantize_int8
from caloforge.runtime.bench import TUNED, format_table, run_bench


@pytest.fixture(scope="module")
def tuned_ir(tmp_path_factory) -> Path:
    """An IR like ``caloforge quantize`` writes (plain ``openvino.save_model``, no manifest)."""
    import openvino as ov

    path = tmp_path_factory.mktemp("tuned") / "model.xml"
    ov.save_model(quantize_int8(None, Calibration(samples=16)), str(path), compress_to_fp16=False)
    return path


def test_bench_times_a_tuned_model_like_the_others(tuned_ir: Path) -> None:
    report = run_bench(True, batches=(4,), precisions=("fp32", "int8"), rounds=1,
                       sample_seconds=0.05, physics_events=20, include_mc=False, tuned=tuned_ir)
    ov_layouts = {(r["streams"], r["threads"]) for r in report["results"]
                  if r["runtime"] == "openvino" and r["precision"] == "fp32"}
    tuned_rows = [r for r in report["results"] if r["precision"] == TUNED]
    assert {(r["streams"], r["threads"]) for r in tuned_rows} == ov_layouts
    assert all(r["median"] > 0 and np.isfinite(r["median"]) for r in tuned_rows)
    s = report["summary"]
    assert s["tuned_vs_fp32"] == pytest.approx(
        s["openvino_tuned_best"]["median"] / s["openvino_fp32_best"]["median"])
    assert "tuned / FP32 (OpenVINO, best settings)" in format_table(report)
    phys = report["physics"]["by_precision"]
    # an INT8 model of the same generator: close to FP32, far from identical
    assert 0 < phys[f"openvino-{TUNED}"]["rel_l2_vs_openvino_fp32"] < 0.5
    assert report["tuned_model"] == str(tuned_ir)


def test_bench_cli_rejects_a_missing_tuned_model(tmp_path: Path, capsys) -> None:
    code = main(["bench", "--tuned", str(tmp_path / "nope.xml"), "--json", str(tmp_path / "b.json")])
    assert code == 2
    assert "nope.xml: no such model file" in capsys.readouterr().err
    assert not (tmp_path / "b.json").exists()
