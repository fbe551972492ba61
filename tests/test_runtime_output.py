"""What the runtime writes: the same bytes whatever the layout, exact zeros below the model's
cell threshold, no file from a broken model / a run that is stopped, the energy ceiling, the
batch-memory check, precision from the manifest, the INT8 cache."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from caloforge.cli import main
from caloforge.errors import UserError
from caloforge.facts import CELL_THRESHOLD_GEV, MAX_ENERGY_GEV
from caloforge.runtime import (
    Calibration,
    check_energies,
    compile_model,
    generate_to_file,
    latent_noise,
    quantize_int8,
    save_model,
)


def _chunks(path: Path) -> tuple[np.ndarray, list[bytes]]:
    with h5py.File(path, "r") as h:
        ds = h["ECAL"]
        return ds[:], [ds.id.read_direct_chunk((lo, 0, 0, 0))[1]
                       for lo in range(0, ds.shape[0], ds.chunks[0])]


def test_file_is_bit_identical_whatever_streams_threads_and_writer_threads(tmp_path) -> None:
    kw = {"energies": [10.0, 100.0, 400.0], "seed": 3}
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    generate_to_file(a, 70, streams=1, threads=1, batch_size=8, writer_threads=1, **kw)
    generate_to_file(b, 70, streams=2, threads=1, batch_size=16, writer_threads=3,
                     chunk_events=32, **kw)
    (xa, ca), (xb, cb) = _chunks(a), _chunks(b)
    assert xa.shape == (70, 25, 25, 25)
    np.testing.assert_array_equal(xa, xb)
    assert ca == cb  # the stored (compressed) chunks too


def test_cells_below_the_threshold_are_exact_zeros(tmp_path) -> None:
    gen = compile_model(None, "fp32", streams=1, batch_size=8)
    e = np.array([10.0, 100.0, 400.0] * 4)
    raw = gen.run(latent_noise(5, 0, e.size), e.astype(np.float32))  # the graph's own output
    assert ((raw > 0) & (raw < CELL_THRESHOLD_GEV)).any()  # the model makes sub-threshold cells
    for threshold, want in [(None, CELL_THRESHOLD_GEV), (1e-3, 1e-3)]:
        path = tmp_path / f"t{threshold}.h5"
        generate_to_file(path, e.size, energies=e, model=gen, seed=5, threshold=threshold)
        with h5py.File(path, "r") as h:
            got = h["ECAL"][:]
            assert h.attrs["cell_threshold_gev"] == want
        np.testing.assert_array_equal(got, np.where(raw < want, 0, raw))


def _constant_model(kind: str):  # type: ignore[no-untyped-def]
    """A generator graph (z, energy -> showers) whose cells are -E (negative) or log(-E) (NaN)."""
    import openvino as ov
    import openvino.opset13 as ops

    z = ops.parameter([-1, 200], np.float32, name="z")
    e = ops.parameter([-1], np.float32, name="energy")
    t = ops.add(ops.unsqueeze(e, [1, 2, 3]),
                ops.multiply(ops.unsqueeze(ops.reduce_sum(z, [1]), [1, 2, 3]),
                             ops.constant(np.float32(0))))
    t = ops.negative(t)
    if kind == "nan":
        t = ops.log(t)
    out = ops.tile(t, ops.constant(np.array([1, 25, 25, 25], np.int64)))
    for node, name in ((z, "z"), (e, "energy"), (out, "showers")):
        node.output(0).get_tensor().set_names({name})
    return ov.Model([out], [z, e], "broken")


@pytest.mark.parametrize("kind,message", [("negative", "negative cell energies"),
                                          ("nan", "NaN or infinite")])
def test_a_model_with_impossible_cells_writes_no_file(tmp_path, kind, message) -> None:
    path = tmp_path / "out.h5"
    with pytest.raises(UserError, match=rf"<in memory>: the model produced \d+ {message}"):
        generate_to_file(path, 70, energies=[50.0], model=_constant_model(kind), streams=1,
                         batch_size=8, chunk_events=16)
    assert list(tmp_path.iterdir()) == []


def test_extrapolation_has_a_hard_ceiling(tmp_path, capsys) -> None:
    with pytest.warns(UserWarning, match="extrapolating"):
        check_energies([5000.0], (2.0, 500.0), allow_extrapolation=True)
    with pytest.raises(UserError, match="ceiling of 10000 GeV"):
        check_energies([MAX_ENERGY_GEV * 1.01], (2.0, 500.0), allow_extrapolation=True)
    out = tmp_path / "x.h5"
    assert main(["generate", "--energies", "1e30", "--allow-extrapolation", "-n", "2",
                 "-o", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--allow-extrapolation does not lift it" in err
    assert not out.exists()


def test_a_batch_bigger_than_the_memory_is_refused_before_compiling(tmp_path, capsys,
                                                                    monkeypatch) -> None:
    from caloforge import resources
    from caloforge.runtime import openvino_backend

    out = tmp_path / "x.h5"
    assert main(["generate", "--energies", "50", "-n", "2", "--batch-size", "100000",
                 "--streams", "1", "-o", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--batch-size 100000" in err and "exceed the machine's memory" in err
    assert not out.exists()
    # the bound is at least one output tensor per event of the batch: 64 events of 62.5 kB
    # (4 MB) cannot fit in 3 MB, and OpenVINO is never asked to compile them
    monkeypatch.setattr(resources, "memory_bytes", lambda: 3_000_000)
    monkeypatch.setattr(openvino_backend, "compile_model",
                        lambda *a, **k: pytest.fail("compiled"))
    with pytest.raises(UserError, match="batch size 64"):
        compile_model(None, "fp32", streams=1, batch_size=64)


@pytest.fixture(scope="module")
def int8_ir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("q") / "gen_int8.xml"
    return save_model(quantize_int8(None, Calibration(samples=16)), path, precision="int8")


def test_generate_takes_the_precision_from_the_model(tmp_path, int8_ir) -> None:
    for name, drop_manifest in (("with.h5", False), ("without.h5", True)):
        if drop_manifest:  # a tuner's IR has no caloforge manifest: its FakeQuantize nodes say
            int8_ir.with_name(int8_ir.name + ".manifest.json").unlink()
        out = tmp_path / name
        assert main(["generate", "--model", str(int8_ir), "--energies", "50", "-n", "2",
                     "--streams", "1", "-o", str(out), "--quiet"]) == 0
        with h5py.File(out, "r") as h:
            assert h.attrs["precision"] == "int8"


def test_int8_is_quantized_once_and_recomputed_when_corrupt(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CALOFORGE_CACHE", str(tmp_path / "cache"))
    cal = Calibration(samples=16)
    z, e = latent_noise(1, 0, 8), np.full(8, 100.0, np.float32)
    first = compile_model(None, "int8", streams=1, batch_size=8, calibration=cal)
    assert first.info["int8_cache"]["hit"] is False
    cached = Path(first.info["int8_cache"]["path"])
    assert cached.is_file() and cached.is_relative_to(tmp_path / "cache")
    manifest = json.loads(cached.with_name(cached.name + ".manifest.json").read_text())
    assert manifest["precision"] == "int8" and manifest["latent_dim"] == 200
    second = compile_model(None, "int8", streams=1, batch_size=8, calibration=cal)
    assert second.info["int8_cache"]["hit"] is True
    ref = first.run(z, e)
    np.testing.assert_array_equal(second.run(z, e), ref)
    bin_ = cached.with_suffix(".bin")
    bin_.write_bytes(bin_.read_bytes()[:1000])  # truncated
    with pytest.warns(RuntimeWarning, match="corrupt cached INT8 model"):
        third = compile_model(None, "int8", streams=1, batch_size=8, calibration=cal)
    assert third.info["int8_cache"]["hit"] is False
    np.testing.assert_array_equal(third.run(z, e), ref)
    # another calibration is another model: not taken from the cache
    other = compile_model(None, "int8", streams=1, batch_size=8,
                          calibration=Calibration(samples=16, seed=1))
    assert other.info["int8_cache"]["hit"] is False


def test_run_stopped_while_compressing_leaves_no_file(tmp_path, monkeypatch) -> None:
    from caloforge.data import codecs

    calls = {"n": 0}
    real = codecs.Codec.compress

    def flaky(self, chunk):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, chunk)

    monkeypatch.setattr(codecs.Codec, "compress", flaky)
    out = tmp_path / "int.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["generate", "--energies", "50", "-n", "300", "--streams", "1",
                   "--batch-size", "16", "-o", str(out), "--quiet"])
    assert rc == 130 and calls["n"] >= 3
    assert list(tmp_path.iterdir()) == []
