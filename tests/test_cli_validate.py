"""``caloforge validate``: outputs, floor, exit code 2 on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from caloforge.cli import main
from caloforge.data import read_showers, write_showers


@pytest.fixture(scope="module")
def files(mc_file, tmp_path_factory):
    from caloforge.mc import simulate

    d = tmp_path_factory.mktemp("val")
    images, energies = read_showers(mc_file)
    cand = d / "cand.h5"
    write_showers(cand, np.roll(images, 1, axis=3), energies)
    floor_img, floor_en = simulate(energies, seed=8)
    floor = d / "floor.h5"
    write_showers(floor, floor_img, floor_en)
    small = d / "small_grid.h5"
    write_showers(small, np.ones((4, 5, 5, 5), np.float32), np.full(4, 50.0))
    return mc_file, cand, floor, small


def test_cli_writes_everything(files, tmp_path, capsys) -> None:
    ref, cand, floor, _ = files
    out = tmp_path / "report"
    rc = main(["validate", "--reference", str(ref), "--candidate", str(cand), "--floor", str(floor),
               "--output", str(out)])
    assert rc == 0
    names = {p.name for p in out.iterdir()}
    assert {"metrics.json", "report.md", "longitudinal_profile.png", "transverse_profiles.png",
            "response.png", "moments.png", "cell_spectrum.png", "hit_multiplicity.png",
            "energy_scan.png", "feature_correlations.png"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    text = (out / "metrics.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    m = json.loads(text)
    c, f = m["candidate_vs_reference"], m["floor_vs_reference"]
    assert m["floor_source"] == {"kind": "file", "path": str(floor)}
    assert c["shape_metric"] > 3 * f["shape_metric"]
    assert c["sep_power_mean"] > f["sep_power_mean"]
    assert c["classifier_auc"] > f["classifier_auc"]
    # the candidate is the reference one layer deeper: the shower maximum moves by one layer
    assert c["scan_shower_max"] == pytest.approx(1.0, abs=0.05)
    v = m["verdict"]
    assert v["level"] == "incompatible" and "classifier_auc" in v["far"]
    rows = {r["key"]: r for r in v["rows"]}
    assert rows["sep_power_mean"]["ratio"] == pytest.approx(c["sep_power_mean"] / f["sep_power_mean"])
    report = (out / "report.md").read_text()
    assert "![Longitudinal profile](longitudinal_profile.png)" in report
    assert "floor (ref. vs indep. ref.)" in report and "3DGAN shape metric" in report
    assert f"**Verdict: {v['line']}.**" in report and "Δ shower max" in report
    printed = capsys.readouterr().out
    assert f"verdict: {v['line']}" in printed and "ratio" in printed.splitlines()[0]
    # one layer deeper: the layer fractions tell it apart, and report and console say which
    cg, fg = c["classifier_auc_groups"], f["classifier_auc_groups"]
    assert cg["layer fractions"]["auc"] > max(0.8, fg["layer fractions"]["auc"])
    assert "Classifier AUC per feature group" in report
    assert "classifier AUC per feature group: scalars" in printed


def test_cli_identical_and_max_events(files, tmp_path, capsys) -> None:
    ref, _, floor_file, _ = files
    out = tmp_path / "same"
    rc = main(["validate", "--reference", str(ref), "--candidate", str(ref), "--output", str(out),
               "--max-events", "60", "--no-plots", "--no-classifier"])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_events"] == {"reference": 60, "candidate": 60, "floor": 60}
    assert m["candidate_vs_reference"]["shape_metric"] == 0.0
    assert m["candidate_vs_reference"]["sep_power_mean"] == 0.0
    assert m["verdict"]["level"] == "compatible"
    # no --floor, MC reference (seed 7): the floor is the MC at the same energies, seed 8 -- the
    # same showers as the fixture's independent file made with simulate(energies, seed=8)
    assert m["floor_source"]["kind"] == "simulated" and m["floor_source"]["seed"] == 8
    out2 = tmp_path / "file_floor"
    assert main(["validate", "--reference", str(ref), "--candidate", str(ref), "--output",
                 str(out2), "--max-events", "60", "--no-plots", "--no-classifier", "--quiet",
                 "--floor", str(floor_file)]) == 0
    m2 = json.loads((out2 / "metrics.json").read_text())
    for k in ("shape_metric", "sep_power_mean", "scan_response", "scan_hits"):
        assert m["floor_vs_reference"][k] == m2["floor_vs_reference"][k]
    assert "verdict: compatible with the MC" in capsys.readouterr().out


def test_cli_no_floor_and_non_mc_reference(files, tmp_path, capsys) -> None:
    ref, cand, _, _ = files
    images, energies = read_showers(ref)
    plain = tmp_path / "plain_ref.h5"                       # no generator attribute: not MC
    write_showers(plain, images, energies)
    thr_cand = tmp_path / "thr_cand.h5"
    write_showers(thr_cand, np.where(images > 1e-4, images, 0), energies,
                  attrs={"cell_threshold_gev": 1e-4})
    out = tmp_path / "nofloor"
    assert main(["validate", "--reference", str(plain), "--candidate", str(thr_cand), "--output",
                 str(out), "--no-plots", "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert "floor_vs_reference" not in m and m["floor"] is None
    assert any("not a caloforge MC file" in n for n in m["notes"])
    # hits are counted above the candidate's threshold in both samples
    assert m["scan_hit_threshold_gev"] == 1e-4
    assert m["candidate_vs_reference"]["scan_hits"] == pytest.approx(0.0, abs=1e-12)
    assert m["verdict"]["level"] in ("unknown", "incompatible")
    assert main(["validate", "--reference", str(ref), "--candidate", str(cand), "--output",
                 str(tmp_path / "nf2"), "--no-plots", "--quiet", "--no-floor"]) == 0
    m = json.loads((tmp_path / "nf2" / "metrics.json").read_text())
    # no floor, but the AUC of a shifted shower is > 0.75: never "compatible"
    assert m["floor_source"] is None and m["verdict"]["level"] == "incompatible"
    try:  # --floor and --no-floor exclude each other (an argparse error: exit code 2)
        rc = main(["validate", "--reference", str(ref), "--candidate", str(cand), "--output",
                   str(tmp_path / "nf3"), "--floor", str(ref), "--no-floor"])
    except SystemExit as exc:
        rc = exc.code
    assert rc == 2 and "--no-floor" in capsys.readouterr().err


def test_cli_bad_input_exits_2(files, tmp_path, capsys) -> None:
    ref, _, _, small = files
    rc = main(["validate", "--reference", str(ref), "--candidate", str(small),
               "--output", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "grid (5, 5, 5) does not match" in err and len(err.splitlines()) == 1
    rc = main(["validate", "--reference", str(tmp_path / "missing.h5"), "--candidate", str(ref),
               "--output", str(tmp_path / "y")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "no such file" in err and len(err.splitlines()) == 1
    (tmp_path / "afile").write_text("x")
    rc = main(["validate", "--reference", str(ref), "--candidate", str(ref),
               "--output", str(tmp_path / "afile")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and f"{tmp_path / 'afile'}: exists and is not a directory" in err
    assert len(err.splitlines()) == 1
    rc = main(["validate", "--reference", str(ref), "--candidate", str(ref),
               "--output", str(tmp_path / "afile" / "sub")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and str(tmp_path / "afile" / "sub") in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # no output folder made


@pytest.mark.parametrize("threshold", ["nan", "-1e-3", "inf"])
def test_cli_bad_hit_threshold_exits_2(files, tmp_path, capsys, threshold) -> None:
    ref = files[0]
    rc = main(["validate", "--reference", str(ref), "--candidate", str(ref), "--output",
               str(tmp_path / "out"), f"--hit-threshold={threshold}", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--hit-threshold" in err and len(err.splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []


def test_cli_bad_candidate_data_leaves_no_output_folder(files, tmp_path, capsys) -> None:
    # the bad cell is only found while streaming the events, after the grids were checked
    ref = files[0]
    images, energies = read_showers(ref)
    bad = images.copy()
    bad[50, 12, 12, 5] = np.nan
    cand = tmp_path / "nan_cells.h5"
    write_showers(cand, bad, energies)
    out = tmp_path / "new" / "report"
    rc = main(["validate", "--reference", str(ref), "--candidate", str(cand), "--output",
               str(out), "--no-plots", "--no-classifier", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and f"{cand}: NaN or infinite cell energies" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan_cells.h5"]
    # an existing output folder is kept, with what it held
    out.mkdir(parents=True)
    (out / "keep.txt").write_text("mine")
    assert main(["validate", "--reference", str(ref), "--candidate", str(cand), "--output",
                 str(out), "--no-plots", "--no-classifier", "--quiet"]) == 2
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_cli_all_empty_candidate_is_reported_not_a_traceback(files, tmp_path, capsys) -> None:
    """A broken generator's showers (every cell 0): the response is -100% in every bin, the
    width of an empty bin is undefined, and the report says so instead of crashing."""
    ref, _, _, _ = files
    images, energies = read_showers(ref)
    empty = tmp_path / "empty.h5"
    write_showers(empty, np.zeros_like(images), energies)
    out = tmp_path / "report"
    rc = main(["validate", "--reference", str(ref), "--candidate", str(empty), "--output",
               str(out), "--no-plots", "--quiet"])
    assert rc == 0
    report = (out / "report.md").read_text()
    assert "NOT compatible" in report
    assert "-100.00%" in report and "undefined" in report


def test_a_candidate_cell_threshold_is_applied_to_every_sample(files, tmp_path, capsys) -> None:
    """A candidate that declares ``cell_threshold_gev`` and equals the reference with its cells
    below that threshold zeroed: with the threshold applied to both (the default) they are the
    same showers (every separation power 0); ``--raw-cells`` sees the MC's sub-threshold cells
    (the sparsity: its fraction of empty cells, differs)."""
    ref, _, floor, _ = files
    images, energies = read_showers(ref)
    thr = 1e-4  # the fixture MC has cells below it in every shower
    assert ((images > 0) & (images < thr)).any(axis=(1, 2, 3)).all()
    cand = tmp_path / "thresholded.h5"
    write_showers(cand, np.where(images >= thr, images, 0.0).astype(np.float32), energies,
                  attrs={"cell_threshold_gev": thr})
    got = {}
    for flag in ([], ["--raw-cells"]):
        out = tmp_path / f"v{len(flag)}"
        rc = main(["validate", "--reference", str(ref), "--candidate", str(cand), "--floor",
                   str(floor), "--output", str(out), "--no-plots", "--no-classifier", "--quiet",
                   *flag])
        assert rc == 0
        got[len(flag)] = json.loads((out / "metrics.json").read_text())
    applied, raw = got[0], got[1]
    assert applied["cell_threshold_applied_gev"] == pytest.approx(thr)
    assert any("cell threshold" in n for n in applied["notes"])
    assert max(applied["candidate_vs_reference"]["sep_power"].values()) == 0.0
    assert raw["cell_threshold_applied_gev"] is None
    assert raw["candidate_vs_reference"]["sep_power"]["sparsity"] > 0.5
