"""Hostile command lines (issue 14): one line on stderr, exit code 2, and no file touched."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from caloforge.cli import main

SHIPPED_ONNX = Path(__file__).resolve().parents[1] / "src/caloforge/gan/default/generator.onnx"


def _run(argv: list[str]) -> int:
    """Exit code of ``caloforge ARGV`` run in this process (argparse errors exit via SystemExit)."""
    try:
        return main([str(a) for a in argv])
    except SystemExit as exc:
        return int(exc.code or 0)


def _one_line(capsys: pytest.CaptureFixture[str], needle: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "usage:" not in err, err
    assert needle in err, err
    return err


def _listing(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


# --------------------------------------------------------------------------- outputs vs inputs
def test_generate_refuses_to_write_over_its_own_model(tmp_path: Path, capsys) -> None:
    model = tmp_path / "m.onnx"
    shutil.copy(SHIPPED_ONNX, model)
    before = model.read_bytes()
    os.link(model, tmp_path / "hard.h5")
    for out in (model, tmp_path / "." / "m.onnx", tmp_path / "hard.h5"):
        assert _run(["generate", "-n", "4", "--energies", "50", "--model", model, "-o", out,
                     "--streams", "1", "--quiet"]) == 2
        _one_line(capsys, "is also an input")
    assert model.read_bytes() == before
    assert _listing(tmp_path) == ["hard.h5", "m.onnx"]
    # a tuned model: its model.bin is an input too
    tuned = tmp_path / "tuned"
    tuned.mkdir()
    (tuned / "model.xml").write_text("<?xml version='1.0'?>\n<net name='generator'></net>\n")
    (tuned / "model.bin").write_bytes(b"\x01" * 256)
    assert _run(["generate", "-n", "4", "--energies", "50", "--model", tuned / "model.xml",
                 "--precision", "int8", "-o", tuned / "model.bin", "--streams", "1",
                 "--quiet"]) == 2
    _one_line(capsys, "model.bin: is also an input")
    assert (tuned / "model.bin").read_bytes() == b"\x01" * 256


@pytest.mark.parametrize("command", [
    ["simulate", "-n", "2", "--energies", "50", "--no-progress"],
    ["generate", "-n", "2", "--energies", "50", "--streams", "1", "--quiet"],
])
def test_output_that_is_a_model_or_weights_file_is_refused(tmp_path: Path, capsys,
                                                           command: list[str]) -> None:
    out = tmp_path / "out.h5"
    shutil.copy(SHIPPED_ONNX, out)
    assert _run([*command, "-o", out]) == 2
    _one_line(capsys, "exists and is not an HDF5 file (it holds an ONNX model)")
    assert out.read_bytes() == SHIPPED_ONNX.read_bytes()
    weights = tmp_path / "w.safetensors"
    shutil.copy(SHIPPED_ONNX.with_suffix(".safetensors"), weights)
    assert _run([*command, "-o", weights]) == 2
    _one_line(capsys, "(it holds safetensors weights)")
    # an older HDF5 output is replaced as before
    assert _run(["simulate", "-n", "1", "--energies", "50", "-o", tmp_path / "ok.h5",
                 "--no-progress"]) == 0
    assert _run([*command, "-o", tmp_path / "ok.h5"]) == 0
    assert _listing(tmp_path) == ["ok.h5", "out.h5", "w.safetensors"]


def test_simulate_output_named_like_a_directory_is_refused(tmp_path: Path, capsys) -> None:
    assert _run(["simulate", "-n", "2", "--energies", "50", "-o", f"{tmp_path}/newdir/",
                 "--no-progress"]) == 2
    _one_line(capsys, "newdir/: names a directory (trailing '/')")
    assert _listing(tmp_path) == []


def test_a_later_simulate_removes_the_temporaries_of_a_killed_one(tmp_path: Path) -> None:
    import socket

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # its pid is now free: a writer killed with -9
    stale = tmp_path / f".out.h5.{socket.gethostname()}-{proc.pid}.k9x2.h5.tmp"
    stale.write_bytes(b"\x00" * 4096)
    assert _run(["simulate", "-n", "2", "--energies", "50", "-o", tmp_path / "out.h5",
                 "--no-progress"]) == 0
    assert _listing(tmp_path) == ["out.h5"]


def test_validate_refuses_an_output_folder_that_would_overwrite_an_input(tmp_path: Path,
                                                                         capsys, mc_file) -> None:
    out = tmp_path / "val"
    out.mkdir()
    os.link(mc_file, out / "metrics.json")  # the candidate, under the name validate writes
    assert _run(["validate", "--reference", mc_file, "--candidate", out / "metrics.json",
                 "--output", out, "--quiet"]) == 2
    _one_line(capsys, "metrics.json: is also an input")
    assert _listing(out) == ["metrics.json"]


def test_quantize_refuses_an_output_folder_holding_its_model(tmp_path: Path, capsys) -> None:
    out = tmp_path / "tuned"
    out.mkdir()
    shutil.copy(SHIPPED_ONNX, out / "model_qdq.onnx")  # a previous tuning's QDQ model
    assert _run(["quantize", "--model", out / "model_qdq.onnx", "--output", out,
                 "--quiet"]) == 2
    _one_line(capsys, "model_qdq.onnx: is also an input")
    assert (out / "model_qdq.onnx").read_bytes() == SHIPPED_ONNX.read_bytes()


def test_bench_checks_its_outputs_before_running(tmp_path: Path, capsys, monkeypatch) -> None:
    import caloforge.workflows as rb

    def never(*a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("the benchmark ran before its outputs were checked")

    monkeypatch.setattr(rb, "run_bench", never)
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    assert _run(["bench", "--quick", "--json", blocker / "b.json"]) == 2
    _one_line(capsys, "afile is not a directory")
    assert _run(["bench", "--quick", "--json", tmp_path / "b.json",
                 "--plot", tmp_path / "no" / "b.png"]) == 2
    _one_line(capsys, "does not exist")
    model = tmp_path / "m.onnx"
    shutil.copy(SHIPPED_ONNX, model)
    assert _run(["bench", "--quick", "--model", model, "--json", tmp_path / "b.json",
                 "--plot", model]) == 2
    _one_line(capsys, "is also an input")
    assert _run(["bench", "--rounds", "0"]) == 2
    _one_line(capsys, "caloforge bench: error: argument --rounds: must be > 0, got 0")
    assert _listing(tmp_path) == ["afile", "m.onnx"]


def test_demo_output_that_is_a_file_is_refused_before_running(tmp_path: Path, capsys,
                                                              monkeypatch) -> None:
    import caloforge.demo as demo

    monkeypatch.setattr(demo, "run_demo", lambda *a, **k: pytest.fail("demo ran"))
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    assert _run(["demo", "--output", blocker / "demo"]) == 2
    _one_line(capsys, "afile is not a directory")


# --------------------------------------------------------------------------- bad values
@pytest.mark.parametrize("command", [
    ["simulate", "-n", "2", "--energies", "50", "--no-progress"],
    ["generate", "-n", "2", "--energies", "50", "--streams", "1", "--quiet"],
])
@pytest.mark.parametrize("seed", [str(2**64), str(10**30), "-1"])
def test_seed_outside_0_to_2_64_is_one_line(tmp_path: Path, capsys, command: list[str],
                                            seed: str) -> None:
    assert _run([*command, "--seed", seed, "-o", tmp_path / "x.h5"]) == 2
    _one_line(capsys, f"argument --seed: expected an integer in 0..2**64-1, got {seed}")
    assert _listing(tmp_path) == []


def test_largest_seed_is_accepted(tmp_path: Path) -> None:
    assert _run(["simulate", "-n", "1", "--energies", "50", "--seed", str(2**64 - 1),
                 "-o", tmp_path / "x.h5", "--no-progress"]) == 0


def test_simulate_chunk_bigger_than_the_memory_is_refused(tmp_path: Path, capsys) -> None:
    assert _run(["simulate", "-n", "1000000000000", "--chunk-size", "1000000000000",
                 "--energies", "50", "-o", tmp_path / "x.h5", "--no-progress"]) == 2
    _one_line(capsys, "exceed the machine's memory")
    assert _listing(tmp_path) == []


@pytest.mark.parametrize("argv, needle", [
    (["simulate", "-n", "ten", "-o", "x.h5"],
     "caloforge simulate: error: argument --n-events/-n: expected an integer, got 'ten'"),
    (["simulate", "-o", "x.h5"],
     "caloforge simulate: error: the following arguments are required: --n-events/-n"),
    (["info"], "caloforge info: error: the following arguments are required: file"),
    (["validate", "--reference", "a.h5"], "caloforge validate: error: the following arguments"),
    (["train", "--epochs", "x"],
     "caloforge train: error: argument --epochs: expected an integer, got 'x'"),
    (["generate", "-n", "4", "-o", "x.h5", "--precision", "int4"],
     "caloforge generate: error: argument --precision: invalid choice: 'int4'"),
    (["quantize", "--output", "d", "--tolerance", "x"],
     "caloforge quantize: error: argument --tolerance: expected a number, got 'x'"),
    (["bench", "--rounds", "x"], "caloforge bench: error: argument --rounds: expected an integer"),
    (["demo", "--n-events", "0"], "caloforge demo: error: argument --n-events: must be > 0, got 0"),
    (["nosuch"], "caloforge: error: argument COMMAND: invalid choice: 'nosuch'"),
])
def test_argument_errors_are_one_line_and_exit_2(capsys, argv: list[str], needle: str) -> None:
    assert _run(argv) == 2
    _one_line(capsys, needle)


def test_closed_stdout_exits_quietly(mc_file) -> None:
    """``caloforge info FILE | true``: no BrokenPipeError traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "caloforge", "info", "--json", str(mc_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before anything is written
    err = proc.stderr.read().decode()
    rc = proc.wait(timeout=120)
    assert err == "" and rc == 1, (rc, err)


# --------------------------------------------------------------------------- train
@pytest.mark.parametrize("extra, needle", [
    (["--lr", "nan"], "argument --lr: must be a finite number > 0, got nan"),
    (["--lr", "-1"], "argument --lr: must be a finite number > 0, got -1"),
    (["--lr-d", "inf"], "argument --lr-d: must be a finite number > 0, got inf"),
    (["--image-scale", "0"], "argument --image-scale: must be a finite number > 0, got 0"),
    (["--flip-prob", "5"], "argument --flip-prob: must be in [0, 0.5), got 5"),
    (["--flip-prob", "0.5"], "argument --flip-prob: must be in [0, 0.5), got 0.5"),
    (["--seed", str(2**64)], "argument --seed: expected an integer in 0..2**64-1"),
])
def test_train_bad_values_are_one_line(tmp_path: Path, capsys, mc_file, extra: list[str],
                                       needle: str) -> None:
    assert _run(["train", "--data", mc_file, "--output", tmp_path / "run", *extra]) == 2
    _one_line(capsys, needle)
    assert _listing(tmp_path) == []


def test_train_output_that_is_or_lies_under_a_file(tmp_path: Path, capsys, mc_file) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    assert _run(["train", "--data", mc_file, "--output", blocker, "--no-progress"]) == 2
    _one_line(capsys, "afile: exists and is not a directory")
    assert _run(["train", "--data", mc_file, "--output", blocker / "run", "--no-progress"]) == 2
    _one_line(capsys, "afile is not a directory")
    assert _listing(tmp_path) == ["afile"] and blocker.read_text() == "x"


def test_train_resume_of_a_missing_run_fails(tmp_path: Path, capsys, mc_file) -> None:
    assert _run(["train", "--data", mc_file, "--output", tmp_path / "run", "--resume",
                 "--no-progress"]) == 2
    _one_line(capsys, "no run to resume")
    assert _listing(tmp_path) == []


def test_failed_train_leaves_no_folders(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.h5"
    bad.write_text("not HDF5")
    assert _run(["train", "--data", bad, "--output", tmp_path / "new" / "run",
                 "--no-progress"]) == 2
    _one_line(capsys, "not an HDF5 file")
    assert _listing(tmp_path) == ["bad.h5"]
    (tmp_path / "empty").mkdir()  # an existing (empty) output folder stays, without sub-folders
    assert _run(["train", "--data", bad, "--output", tmp_path / "empty", "--no-progress"]) == 2
    _one_line(capsys, "not an HDF5 file")
    assert _listing(tmp_path) == ["bad.h5", "empty"]


def test_torch_backend_names_the_mismatched_tensors(tmp_path: Path, capsys) -> None:
    import torch

    from caloforge.gan.checkpoint import save_tensors
    from caloforge.gan.model import Generator

    state = dict(Generator().state_dict())
    state["conv2.weight"] = torch.zeros(6, 64, 5, 5, 5)  # wrong kernel
    save_tensors(tmp_path / "shape.safetensors", state)
    del state["conv2.weight"], state["bn1.running_var"]
    save_tensors(tmp_path / "missing.safetensors", state)
    for name, needle in (("shape", "'conv2.weight' has shape (6, 64, 5, 5, 5)"),
                         ("missing", "missing 2 tensor(s) (e.g. bn1.running_var, conv2.weight)")):
        assert _run(["generate", "-n", "2", "--energies", "50", "--backend", "torch", "--model",
                     tmp_path / f"{name}.safetensors", "-o", tmp_path / "x.h5", "--quiet"]) == 2
        err = _one_line(capsys, needle)
        assert f"{name}.safetensors" in err
    assert not (tmp_path / "x.h5").exists()


def test_local_cluster_shutdown_noise_of_the_workers_is_not_shown(tmp_path: Path) -> None:
    """A worker's heartbeat racing its own close logs 'Failed to communicate with scheduler during
    heartbeat' with a traceback at ERROR level (dask/distributed#7105; seen after 1 in ~7
    successful ``simulate --workers 2``). The race is emulated by logging that record from a
    worker: it must not reach the terminal (task failures still come back through the futures)."""
    script = tmp_path / "noise.py"
    script.write_text(
        "import logging\n"
        "from caloforge.scale.production import local_cluster\n"
        "def noise():\n"
        "    logging.getLogger('distributed.worker').error(\n"
        "        'Failed to communicate with scheduler during heartbeat.')\n"
        "if __name__ == '__main__':\n"
        "    with local_cluster(1) as client:\n"
        "        client.run(noise)\n"
        "    print('done')\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "done", proc.stderr
    assert "heartbeat" not in proc.stderr, proc.stderr
