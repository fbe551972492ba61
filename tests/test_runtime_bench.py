"""``caloforge bench`` with a tuned model: its rows, speed-up line and physics row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from caloforge.cli import main
from caloforge.runtime import Calibration, compile_model, latent_noise, quantize_int8
from caloforge.workflows import TUNED, BenchReport, format_table, run_bench


@pytest.fixture(scope="module")
def tuned_ir(tmp_path_factory) -> Path:
    """An IR like ``caloforge quantize`` writes (plain ``openvino.save_model``, no manifest)."""
    import openvino as ov

    path = tmp_path_factory.mktemp("tuned") / "model.xml"
    ov.save_model(quantize_int8(None, Calibration(samples=16)), str(path), compress_to_fp16=False)
    return path


def test_bench_times_a_tuned_model_like_the_others(tuned_ir: Path) -> None:
    report = run_bench(True, batches=(4,), precisions=("fp32", "int8"), rounds=1,
                       sample_seconds=0.05, physics_events=20, mc_seconds=0.0, tuned=tuned_ir,
                       end_to_end=False, calibration_size=16)
    ov_layouts = {(r.streams, r.threads) for r in report.rows
                  if r.runtime == "openvino" and r.precision == "fp32"}
    tuned_rows = [r for r in report.rows if r.precision == TUNED]
    assert {(r.streams, r.threads) for r in tuned_rows} == ov_layouts
    assert all(r.median > 0 and np.isfinite(r.median) for r in tuned_rows)
    s = report.summary
    tuned_best, fp32_best = s.best(TUNED), s.best("fp32")
    assert tuned_best is not None and fp32_best is not None
    assert "tuned / FP32 (OpenVINO, best settings)" in format_table(report)
    # the tuned row is the tuned model: its physics row equals the tuned IR run on its own
    # (same latent noise at 100 GeV as the bench, batch 4), against OpenVINO FP32
    z, e = latent_noise(2026, 0, 20), np.full(20, 100.0, np.float32)
    mine = compile_model(tuned_ir, "int8", streams=1, batch_size=4).run(z, e)
    ref = compile_model(None, "fp32", streams=1, batch_size=4).run(z, e)
    want = float(np.linalg.norm(mine - ref) / np.linalg.norm(ref))
    got = report.physics[f"openvino-{TUNED}"].rel_l2_vs_openvino_fp32
    assert want > 0 and got == pytest.approx(want, rel=1e-3)
    assert report.tuned_model == str(tuned_ir)
    # the JSON form reads back to the same rows (the demo report reads bench.json this way)
    again = BenchReport.from_json(report.to_json())
    assert [r.key for r in again.rows] == [r.key for r in report.rows]
    assert again.best(TUNED) == tuned_best


def test_bench_cli_rejects_a_missing_tuned_model(tmp_path: Path, capsys) -> None:
    code = main(["bench", "--tuned", str(tmp_path / "nope.xml"), "--json", str(tmp_path / "b.json")])
    assert code == 2
    assert "nope.xml: no such model file" in capsys.readouterr().err
    assert not (tmp_path / "b.json").exists()
