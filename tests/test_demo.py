"""``caloforge demo --quick`` end to end (MC -> GAN -> validate -> tune -> validate -> bench ->
report), then ``--resume`` skipping every completed stage; plus the cheap pieces on their own."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from caloforge.demo import reference_energies, settings_for
from caloforge.demo.settings import BIN_CENTRES_GEV
from caloforge.errors import UserError

STAGES = ("mc", "gan-fp32", "validate-fp32", "tune", "gan-tuned", "validate-tuned", "bench")


def _finite(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def test_reference_energies_fill_every_metric_bin():
    e = reference_energies(140, seed=3)
    assert e.shape == (140,)
    for c in BIN_CENTRES_GEV:
        n = int(np.sum(np.abs(e - c) <= 5.0))
        assert n == 20, (c, n)
    assert e.max() <= 500.0  # inside the shipped model's trained range
    np.testing.assert_array_equal(e, reference_energies(140, seed=3))  # same seed, same sample
    assert not np.array_equal(e, reference_energies(140, seed=4))


def test_settings_reject_too_few_events():
    with pytest.raises(UserError, match="20 per 3DGAN metric bin"):
        settings_for(quick=True, n_events=100)
    s = settings_for(quick=False, n_events=700)
    assert s.tune_events == 700 and s.n_events == 700


@pytest.mark.parametrize("args, needle", [
    (["--n-events", "50"], "--n-events 50: at least 140 are needed"),
    (["--tune-timeout", "nan"], "--tune-timeout nan: must be positive"),
    (["--tune-timeout=-1"], "--tune-timeout -1.0: must be positive"),
])
def test_cli_demo_bad_input_is_one_line(tmp_path, capsys, args, needle):
    from caloforge.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--quick", *args, "--output", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("caloforge demo: error:") and needle in err, err
    assert "\n" not in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_cli_demo_output_that_is_a_file(tmp_path, capsys):
    from caloforge.cli import main

    blocker = tmp_path / "regular"
    blocker.write_text("x")
    for out, needle in ((blocker, f"{blocker}: exists and is not a directory"),
                        (blocker / "sub", f"{blocker / 'sub'}: {blocker} is not a directory")):
        assert main(["demo", "--quick", "--output", str(out), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and "\n" not in err, err
    assert blocker.read_text() == "x" and [p.name for p in tmp_path.iterdir()] == ["regular"]


@pytest.mark.slow
def test_quick_demo_end_to_end_and_resume(tmp_path, capsys):
    from caloforge.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--output", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    for i in range(1, 9):
        assert f"[{i}/8]" in printed
    for rel in ("report.md", "demo.json", "fig1_fp32_vs_int8.png", "fig2_multistream.png",
                "mc/reference.h5", "mc/floor.h5", "gan/fp32.h5", "gan/tuned.h5",
                "validate/fp32/report.md", "validate/tuned/metrics.json", "tune/model.xml",
                "bench/bench.json"):
        assert (out / rel).exists(), rel
    for fig in ("fig1_fp32_vs_int8.png", "fig2_multistream.png"):
        assert (out / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    demo = json.loads((out / "demo.json").read_text())
    h = demo["headline"]
    for key in ("fp32", "tuned", "floor"):
        assert _finite(h["metric"][key]), key
    assert h["metric"]["floor"] > 0
    for key in ("torch", "fp32", "int8", "tuned"):
        assert _finite(h["throughput_best"][key]["median"]) and h["throughput_best"][key]["median"] > 0
    assert _finite(h["speedup"]["int8_vs_fp32"]) and _finite(h["speedup"]["tuned_vs_fp32"])
    assert all(_finite(v) for v in h["speedup"]["multistream_gain"].values())
    assert _finite(h["gan_vs_mc"]["mc_showers_per_s_100gev_1core"])
    assert _finite(h["gan_vs_mc"]["gan_vs_mc_1core"])
    assert h["tuner_metric"] is not None and _finite(h["tuner_metric"]["fp32"])
    assert isinstance(h["tuner_metric"]["passed"], bool)
    assert [t["stage"] for t in demo["timings"]][:7] == list(STAGES)
    assert not any(t["skipped"] for t in demo["timings"])
    report = (out / "report.md").read_text()
    assert "fig1_fp32_vs_int8.png" in report and "fig2_multistream.png" in report
    assert "validate/fp32/report.md" in report and "GAN vs MC" in report
    assert not re.search(r"\bnan\b", report, re.IGNORECASE)  # no NaN printed anywhere

    # --resume: every completed stage is skipped, the report is rewritten with the same numbers
    mtime = (out / "gan/fp32.h5").stat().st_mtime_ns
    assert main(["demo", "--quick", "--output", str(out), "--no-progress", "--resume"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("skipped (--resume)") == len(STAGES)
    demo2 = json.loads((out / "demo.json").read_text())
    assert [t["skipped"] for t in demo2["timings"][:7]] == [True] * 7
    assert demo2["headline"]["metric"] == h["metric"]
    assert (out / "gan/fp32.h5").stat().st_mtime_ns == mtime

    # --resume with other settings is refused, in one line
    assert main(["demo", "--quick", "--output", str(out), "--seed", "5", "--resume"]) == 2
    assert "other settings" in capsys.readouterr().err
