"""``caloforge simulate`` and ``caloforge info`` through ``caloforge.cli.main``."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from caloforge.cli import main
from caloforge.data import open_showers


def _one_line_error(capsys, needle):
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert needle in err, err
    return err


def test_simulate_and_info(tmp_path, capsys):
    out = tmp_path / "sim.h5"
    rc = main(["simulate", "--n-events", "30", "--energies", "10,50,100", "--seed", "4",
               "--output", str(out), "--chunk-size", "8", "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "Wrote 30 electron showers" in text and "seed 4" in text
    with open_showers(out) as f:
        assert f.n_events == 30 and f.layout == "3dgan" and f.attrs["seed"] == 4
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "30 events" in info and "3dgan" in info and "25x25x25" in info
    assert "E_vis/E" in info and "seed 4" in info
    assert main(["info", "--json", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["n_events"] == 30


def test_simulate_calochallenge_range(tmp_path, capsys):
    out = tmp_path / "cc.h5"
    assert main(["simulate", "-n", "5", "--energy-range", "20:40", "--layout", "calochallenge",
                 "-o", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    with open_showers(out) as f:
        assert f.layout == "calochallenge"
        _, e = f.read()
    assert e.min() >= 20 and e.max() <= 40
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "layout calochallenge" in info and "5 events" in info


@pytest.mark.parametrize("args, needle", [
    (["-n", "0"], "--n-events must be positive"),
    (["-n", "-3"], "--n-events must be positive"),
    (["-n", "5", "--energies=-10"], "outside the supported range"),
    (["-n", "5", "--energies", "nan"], "NaN"),
    (["-n", "5", "--energies", "5000"], "outside the supported range"),
    (["-n", "5", "--energies", "ten"], "expected comma-separated numbers"),
    (["-n", "5", "--energy-range", "0.1:100"], "outside the supported range"),
    (["-n", "5", "--energy-range", "100:10"], "LOW must be below HIGH"),
    (["-n", "5", "--energy-range", "nan:10"], "--energy-range 'nan:10': LOW and HIGH must be finite"),
    (["-n", "5", "--energy-range", "10:inf"], "--energy-range '10:inf': LOW and HIGH must be finite"),
    (["-n", "5", "--seed", "-1"], "--seed"),
    (["-n", "5", "--chunk-size", "0"], "--chunk-size"),
])
def test_simulate_bad_input(tmp_path, capsys, args, needle):
    out = tmp_path / "bad.h5"
    try:
        rc = main(["simulate", *args, "-o", str(out), "--no-progress"])
    except SystemExit as exc:  # argparse type errors (--seed)
        rc = exc.code
    assert rc == 2
    _one_line_error(capsys, needle)
    assert list(tmp_path.iterdir()) == []


def test_simulate_unwritable_output(tmp_path, capsys):
    rc = main(["simulate", "-n", "3", "-o", str(tmp_path / "missing" / "x.h5"), "--no-progress"])
    assert rc == 2
    _one_line_error(capsys, "does not exist")
    rc = main(["simulate", "-n", "3", "-o", str(tmp_path), "--no-progress"])
    assert rc == 2
    _one_line_error(capsys, f"{tmp_path}: is a directory")
    # an output "directory" that is a regular file: one line naming the path, no traceback
    blocker = tmp_path / "regular"
    blocker.write_text("x")
    out = blocker / "x.h5"
    rc = main(["simulate", "-n", "3", "-o", str(out), "--no-progress"])
    assert rc == 2
    _one_line_error(capsys, f"{out}: {blocker} is not a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["regular"]
    assert blocker.read_text() == "x"


def test_info_bad_files(tmp_path, capsys):
    missing = tmp_path / "nope.h5"
    assert main(["info", str(missing)]) == 2
    _one_line_error(capsys, f"{missing}: no such file")
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    assert main(["info", str(text)]) == 2
    _one_line_error(capsys, f"{text}: not an HDF5 file")
    nokeys = tmp_path / "nokeys.h5"
    with h5py.File(nokeys, "w") as h5:
        h5["ECAL"] = np.ones((2, 25, 25, 25), np.float32)
    assert main(["info", str(nokeys)]) == 2
    _one_line_error(capsys, f"{nokeys}: 3DGAN layout without primary energies")
    nan = tmp_path / "nan.h5"
    with h5py.File(nan, "w") as h5:
        h5["ECAL"] = np.ones((2, 25, 25, 25), np.float32)
        h5["energy"] = np.array([np.nan, 1.0])
    assert main(["info", str(nan)]) == 2
    _one_line_error(capsys, f"{nan}: NaN")
    # a dataset of the wrong type (bytes, a group) or corrupt compressed data: one line, exit 2
    strings = tmp_path / "strings.h5"
    with h5py.File(strings, "w") as h5:
        h5["ECAL"] = np.ones((2, 25, 25, 25), np.float32)
        h5["energy"] = np.array([b"ten", b"six"])
    assert main(["info", str(strings)]) == 2
    _one_line_error(capsys, f"{strings}: dataset 'energy' holds |S3, expected real numbers")
    group = tmp_path / "group.h5"
    with h5py.File(group, "w") as h5:
        h5["ECAL"] = np.ones((2, 25, 25, 25), np.float32)
        h5.create_group("energy")
    assert main(["info", str(group)]) == 2
    _one_line_error(capsys, f"{group}: 'energy' is a Group, expected a dataset")


def test_info_corrupt_compressed_data(tmp_path, capsys):
    from caloforge.mc import simulate_to_file

    path = tmp_path / "corrupt.h5"
    simulate_to_file(path, 20, energies=np.array([50.0]), seed=3, progress=False)
    with h5py.File(path, "r") as h5:
        offset = h5["ECAL"].id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as fh:  # overwrite the start of the first compressed chunk
        fh.seek(offset)
        fh.write(b"\x5a" * 4096)
    assert main(["info", str(path)]) == 2
    _one_line_error(capsys, f"{path}: corrupt HDF5 data in events 0..19")


def test_interrupted_simulate_leaves_no_file(tmp_path, monkeypatch, capsys):
    import caloforge.mc as mc

    calls = {"n": 0}
    real = mc.simulate

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(mc, "simulate", flaky)
    out = tmp_path / "int.h5"
    rc = main(["simulate", "-n", "10", "--chunk-size", "4", "-o", str(out), "--no-progress"])
    assert rc == 130
    assert list(tmp_path.iterdir()) == []
