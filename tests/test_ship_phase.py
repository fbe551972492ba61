"""A ``phase`` generator installed as the default model: export, card, generate, bench.

A tiny untrained phase generator whose layer-energy library is built from a small caloforge MC
file is exported with :func:`caloforge.gan.ship.export_default` into a temporary directory that
``CALOFORGE_DEFAULT_MODEL_DIR`` makes the default; the commands that run "the shipped model" must
then run it and say what it is.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from caloforge.cli import main
from caloforge.gan.shipped import CARD_NAME, DIR_ENV, ONNX_NAME, WEIGHTS_NAME

KNOTS, ENTRIES = 4, 8


@pytest.fixture(scope="module")
def installed(tmp_path_factory, mc_file):
    """(default dir, card, run dir, floor file) of the exported tiny phase model."""
    from caloforge.gan.checkpoint import save_generator
    from caloforge.gan.layers import build_library
    from caloforge.gan.phase import PhaseGenerator
    from caloforge.gan.ship import export_default
    from caloforge.mc import simulate_to_file

    root = tmp_path_factory.mktemp("ship-phase")
    floor = root / "floor.h5"
    simulate_to_file(floor, 96, energies=np.array([10.0, 50.0, 100.0]), seed=8, chunk_size=32,
                     progress=False)
    torch.manual_seed(0)
    gen = PhaseGenerator(layer_library=(KNOTS, ENTRIES))
    lib = build_library(mc_file, 1e-6, knots=KNOTS, entries=ENTRIES)
    gen.layers.fill(*(torch.from_numpy(lib[k]) for k in ("table", "counts", "knots")))
    run = root / "run"
    (run / "generators").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    config = {"data": str(mc_file), "architecture": "phase", "seed": 5, "device": "cpu",
              "batch_size": 8, "layer_library": None}
    save_generator(gen.eval(), run / "generators" / "epoch-0001.safetensors",
                   {"epoch": 1, "energy_range_gev": [10.0, 100.0], "architecture": "phase",
                    "config": config})
    (run / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "train_seconds": 2.0,
                                                   "samples_per_s": 48.0,
                                                   "wall_seconds": 3.0}) + "\n")
    (run / "checkpoints" / "epoch-0001.json").write_text(json.dumps({"hardware": "test CPU"}))
    dest = root / "default"
    card = export_default(run, epoch=1, test_data=str(mc_file), floor_data=str(floor),
                          dest=dest, classifier=False, reproduce="test")
    return dest, card, run, floor


def test_export_writes_a_phase_card_that_matches_the_files(installed, mc_file) -> None:
    import onnx

    dest, card, _, _ = installed
    assert {p.name for p in dest.iterdir()} == {WEIGHTS_NAME, ONNX_NAME, CARD_NAME}
    assert json.loads((dest / CARD_NAME).read_text()) == card
    # the latent size the card states is the graph's own z input: 64 global + 7^3 + 14^3 per-cell
    # noise numbers + 2 for the library draw
    graph = onnx.load(str(dest / ONNX_NAME))
    z = next(i for i in graph.graph.input if i.name == "z")
    assert z.type.tensor_type.shape.dim[1].dim_value == card["latent_dim"] == 64 + 343 + 2744 + 2
    assert card["architecture"] == "phase" and card["cell_threshold_gev"] == 1e-6
    lib = card["layer_library"]
    assert (lib["knots"], lib["entries"]) == (KNOTS, ENTRIES)
    assert lib["source"] == str(mc_file) and lib["source_kind"] == "the training data"
    tr = card["training"]
    assert tr["showers_seen"] == 96 and tr["distinct_events"] == 96  # 48/s x 2 s; the file's 96
    assert tr["device"] == "cpu" and tr["hardware"] == "test CPU"
    assert card["onnx_parity_rel_l2"] is None or card["onnx_parity_rel_l2"] < 1e-4


def test_card_verdict_calls_an_untrained_model_not_compatible(installed) -> None:
    _, card, _, floor = installed
    v = card["validation"]
    assert v["floor"] == str(floor) and v["n_events"]["candidate"] == 96
    assert v["level"] == "incompatible" and v["verdict"].startswith("NOT compatible with the MC")
    assert v["worst_ratio"] > 3 and v["worst"] in v["far"]
    assert "per-energy targets" in v["verdict"]
    used = [r for r in v["per_energy"] if "skipped" not in r]
    assert {r["energy_gev"] for r in used} == {10.0, 50.0, 100.0}
    assert v["per_energy_targets_met"] == f"{sum(r['ok'] for r in used)}/3"
    assert card["metric"]["metric"] > card["mc_floor"]["metric"] > 0


def test_generate_runs_the_installed_phase_default(installed, tmp_path, monkeypatch,
                                                   capsys) -> None:
    dest = installed[0]
    monkeypatch.setenv(DIR_ENV, str(dest))
    for precision in ("fp32", "int8"):
        out = tmp_path / f"{precision}.h5"
        assert main(["generate", "-n", "24", "--energies", "10,50,100", "--precision",
                     precision, "--quiet", "--output", str(out)]) == 0
        with h5py.File(out, "r") as f:
            img, e = f["ECAL"][:], f["energy"][:]
            assert f.attrs["architecture"] == "phase" and f.attrs["precision"] == precision
            assert str(dest) in str(f.attrs["model"])
        # exact zeros below the 1 keV threshold, nothing between 0 and it
        assert np.all((img == 0) | (img >= 1e-6)) and (img == 0).any()
        # the library replays MC layer energies: a W/Si sampling calorimeter's 1-3 % visible
        frac = img.sum(axis=(1, 2, 3)) / e
        assert 0.01 < np.median(frac) < 0.03, (precision, np.median(frac))
    # outside the installed model's trained range (10-100 GeV, from its card): one line, exit 2
    assert main(["generate", "-n", "2", "--energies", "400", "--output",
                 str(tmp_path / "x.h5")]) == 2
    assert "trained range 10-100 GeV" in capsys.readouterr().err


def test_bench_quick_path_runs_the_phase_default(installed, monkeypatch) -> None:
    from caloforge.workflows import run_bench

    monkeypatch.setenv(DIR_ENV, str(installed[0]))
    rep = run_bench(quick=True, batches=(2,), precisions=("fp32",), rounds=1,
                    sample_seconds=0.02, plain=False, torch_single_thread=False,
                    physics_events=0, mc_seconds=0, end_to_end=False, calibration_size=4)
    runtimes = {r.runtime for r in rep.rows}
    assert runtimes == {"torch", "openvino"}  # PyTorch eager loads the phase weights too
    assert all(r.median > 0 for r in rep.rows)
    assert rep.model.endswith(ONNX_NAME) and str(installed[0]) in rep.model


def test_a_default_dir_without_a_model_is_one_line(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv(DIR_ENV, str(tmp_path))
    assert main(["generate", "-n", "2", "--energies", "50", "--output",
                 str(tmp_path / "x.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tmp_path) in err and DIR_ENV in err


def test_replacing_a_3dgan_default_keeps_the_3dgan_as_reference(installed, tmp_path,
                                                               monkeypatch) -> None:
    import shutil

    from caloforge.gan import ship, shipped

    reference_3dgan = shipped.reference_3dgan_dir()
    if reference_3dgan is None:
        pytest.skip("no trained reference 3DGAN in this installation")
    package, reference = tmp_path / "default", tmp_path / "reference"
    shutil.copytree(reference_3dgan, package)
    for mod in (ship, shipped):
        monkeypatch.setattr(mod, "PACKAGE_DIR", package)
        monkeypatch.setattr(mod, "REFERENCE_DIR", reference)
    monkeypatch.delenv(DIR_ENV, raising=False)
    monkeypatch.setattr(shipped, "DEFAULT_DIR", package)
    before = {n: (package / n).read_bytes() for n in (WEIGHTS_NAME, ONNX_NAME, CARD_NAME)}
    card = ship.export_default(installed[2], epoch=1)  # into the (patched) package default
    assert "reference" in card["replaced"]
    assert shipped.default_architecture() == "phase"
    assert shipped.reference_3dgan_dir() == reference
    assert {n: (reference / n).read_bytes() for n in before} == before  # the 3DGAN, unchanged
    assert sorted(p.name for p in package.iterdir()) == sorted(before)  # no staging left
    # a second export (another phase epoch) leaves the reference alone
    card = ship.export_default(installed[2], epoch=1)
    assert "replaced" not in card and (reference / CARD_NAME).read_bytes() == before[CARD_NAME]


def test_export_calibrates_a_sparse_model_with_an_independent_file_only(installed, mc_file,
                                                                        tmp_path) -> None:
    """``export_default(calibrate_with=...)``: the installed weights carry the calibrated prior
    (the run's file is untouched) and the card records the calibration; calibrating with the
    test data itself is refused with one line."""
    from caloforge.errors import UserError
    from caloforge.gan.checkpoint import load_generator, read_metadata, save_generator
    from caloforge.gan.phase import PhaseGenerator
    from caloforge.gan.ship import export_default

    _, _, run, floor = installed
    src = run / "generators" / "epoch-0001.safetensors"
    meta = read_metadata(src)
    one_channel = load_generator(src)
    torch.manual_seed(1)
    gen = PhaseGenerator(layer_library=(KNOTS, ENTRIES), sparse=True)
    gen.layers.load_state_dict(one_channel.layers.state_dict())
    sparse_run = tmp_path / "sparse-run"
    (sparse_run / "generators").mkdir(parents=True)
    (sparse_run / "metrics.jsonl").write_text((run / "metrics.jsonl").read_text())
    save_generator(gen.eval(), sparse_run / "generators" / "epoch-0001.safetensors",
                   {"epoch": 1, "energy_range_gev": [10.0, 100.0], "architecture": "phase",
                    "config": json.loads(meta["config"])})
    with pytest.raises(UserError, match="calibration file is the test data"):
        export_default(sparse_run, epoch=1, test_data=str(mc_file), calibrate_with=str(mc_file),
                       dest=tmp_path / "never")
    card = export_default(sparse_run, epoch=1, calibrate_with=str(floor), dest=tmp_path / "cal",
                          keep_reference=False, calibration_passes=3, calibration_match="shape")
    assert card["calibration"]["passes"] == 3 and card["calibration"]["files"] == [str(floor)]
    assert card["calibration"]["match"] == "shape"
    offsets = card["calibration"]["probit_offset_per_pass"]
    assert offsets[-1] < offsets[0]
    installed_gen = load_generator(tmp_path / "cal" / WEIGHTS_NAME)
    assert not torch.equal(installed_gen.prior_sparse, gen.prior_sparse)
    assert torch.equal(load_generator(sparse_run / "generators" / "epoch-0001.safetensors")
                       .prior_sparse, gen.prior_sparse)


def test_export_can_replace_the_layer_library(installed, mc_file, tmp_path) -> None:
    """``export_default(library_files=...)``: the installed generator draws from a library of
    those files (same knots, their events per knot) and the card says so; the test data as a
    library file is refused with one line."""
    from caloforge.errors import UserError
    from caloforge.gan.checkpoint import load_generator
    from caloforge.gan.ship import export_default
    from caloforge.mc import simulate_to_file

    _, _, run, floor = installed
    with pytest.raises(UserError, match="library file is the test data"):
        export_default(run, epoch=1, test_data=str(mc_file), library_files=[str(mc_file)],
                       dest=tmp_path / "never")
    card = export_default(run, epoch=1, library_files=[str(floor)], library_entries=40,
                          dest=tmp_path / "lib", keep_reference=False)
    gen = load_generator(tmp_path / "lib" / WEIGHTS_NAME)
    assert tuple(gen.layers.table.shape) == (KNOTS, 40, 25)
    # the floor file: 96 events at 10, 50, 100 GeV; each of the 4 knots (10-100 GeV) holds the
    # 32 events nearest to it (build_library's minimum), not the run's 8
    assert gen.layers.counts.tolist() == [32.0] * KNOTS
    run_gen = load_generator(run / "generators" / "epoch-0001.safetensors")
    assert torch.equal(gen.layers.knots, run_gen.layers.knots)
    lib = card["layer_library"]
    assert (lib["entries"], lib["source"], lib["source_kind"]) == (
        40, [str(floor)], "--export-library files")
    other = tmp_path / "other.h5"   # other energies: other knots, refused with one line
    simulate_to_file(other, 12, energies=np.array([20.0, 30.0]), seed=9, progress=False)
    with pytest.raises(UserError, match="library energies 20-30 GeV"):
        export_default(run, epoch=1, library_files=str(other), dest=tmp_path / "never")
    with pytest.raises(UserError, match="library_entries 0"):
        export_default(run, epoch=1, library_files=str(floor), library_entries=0,
                       dest=tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_a_bad_calibration_mode_or_pass_count_is_one_line(installed, tmp_path, capsys) -> None:
    """``--calibration-match bogus`` / ``--calibration-passes 0``: one line, exit 2, nothing
    installed; the library names its parameters and refuses before any work."""
    from caloforge.errors import UserError
    from caloforge.gan.ship import export_default

    _, _, run, floor = installed
    never = tmp_path / "never"
    args = ["train", "--export-default", str(run), "--epoch", "1", "--calibrate-with",
            str(floor), "--install-dir", str(never)]
    for extra, said in ((["--calibration-match", "bogus"],
                         "--calibration-match 'bogus': choose mean, log, both, shape"),
                        (["--calibration-passes", "0"], "--calibration-passes")):
        try:
            rc = main(args + extra)
        except SystemExit as exc:  # argparse's own errors (OneLineParser: one line too)
            rc = exc.code
        err = capsys.readouterr().err
        assert rc == 2, err
        assert err.count("\n") == 1 and said in err and "Traceback" not in err
    for kwargs, said in (({"calibration_match": "median"}, "calibration_match 'median': choose"),
                         ({"calibration_passes": 0}, "calibration_passes 0: expected")):
        with pytest.raises(UserError, match=said):
            export_default(run, epoch=1, calibrate_with=str(floor), dest=never, **kwargs)
    assert not never.exists()


def test_export_library_flags_through_the_command_line(installed, tmp_path, capsys) -> None:
    """``caloforge train --export-default RUN --export-library H5 --library-entries N``: the
    installed generator holds an N-entry library; a missing library file, or N = 0, is one line
    and exit 2, and nothing is installed."""
    from caloforge.gan.checkpoint import load_generator

    _, _, run, floor = installed
    dest = tmp_path / "cli-lib"
    base = ["train", "--export-default", str(run), "--epoch", "1"]
    assert main([*base, "--export-library", str(floor), "--library-entries", "40",
                 "--install-dir", str(dest)]) == 0
    capsys.readouterr()
    assert tuple(load_generator(dest / WEIGHTS_NAME).layers.table.shape) == (KNOTS, 40, 25)
    never = tmp_path / "never"
    for extra, said in ((["--export-library", str(tmp_path / "missing.h5")], "missing.h5"),
                        (["--export-library", str(floor), "--library-entries", "0"],
                         "--library-entries")):
        try:
            rc = main(base + extra + ["--install-dir", str(never)])
        except SystemExit as exc:  # argparse's own errors (one line too)
            rc = exc.code
        err = capsys.readouterr().err
        assert rc == 2, err
        assert err.count("\n") == 1 and said in err and "Traceback" not in err
    assert not never.exists()
