"""HDF5 data layer: round trips in both layouts, 3DGAN target files, streaming, atomicity,
summaries and bad files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from caloforge.data import ShowerWriter, open_showers, read_showers, write_showers
from caloforge.data.summary import format_summary, summarize
from caloforge.errors import UserError


@pytest.mark.parametrize("layout", ["3dgan", "calochallenge"])
def test_round_trip(tmp_path, mc_small, layout):
    images, energies = mc_small
    path = write_showers(tmp_path / f"{layout}.h5", images[:20], energies[:20], layout=layout,
                         attrs={"seed": 1, "detector": {"name": "x"}})
    with open_showers(path) as f:
        assert f.layout == layout and f.grid == (25, 25, 25) and f.n_events == 20
        img, en = f.read()
        assert f.attrs["detector"] == {"name": "x"}
    # CaloChallenge stores MeV in float32: relative rounding ~1e-7
    np.testing.assert_allclose(img, images[:20], rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(en, energies[:20], rtol=1e-6)


def test_target_column_file(tmp_path, mc_small):
    images, energies = mc_small
    path = tmp_path / "old.h5"
    with h5py.File(path, "w") as h5:
        h5["ECAL"] = images[:10]
        h5["target"] = np.stack([np.zeros(10), energies[:10], np.ones(10)], axis=1)
    img, en = read_showers(path)
    np.testing.assert_array_equal(img, images[:10])
    np.testing.assert_allclose(en, energies[:10])
    assert summarize(path)["n_events"] == 10


def test_streaming_chunks(mc_file):
    with open_showers(mc_file) as f:
        chunks = list(f.iter_chunks(40))
        whole, en = f.read()
    assert [len(c[1]) for c in chunks] == [40, 40, 16]
    np.testing.assert_array_equal(np.concatenate([c[0] for c in chunks]), whole)
    np.testing.assert_array_equal(en[:3], [10.0, 50.0, 100.0])


def test_writer_atomic_on_exception(tmp_path, mc_small):
    images, energies = mc_small
    path = tmp_path / "partial.h5"
    with pytest.raises(RuntimeError), ShowerWriter(path) as w:
        w.append(images[:5], energies[:5])
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_summary_of_mc_file(mc_file):
    s = summarize(mc_file, chunk_size=25)  # chunked read gives the same as a single block
    assert s["n_events"] == 96 and s["layout"] == "3dgan" and s["grid"] == [25, 25, 25]
    assert s["energy_min"] == 10.0 and s["energy_max"] == 100.0
    assert 0.018 < s["visible_fraction_mean"] < 0.025
    assert s["seed"] == 7 and s["generator"] == "caloforge-mc-gflash"
    assert s["detector"] == "CLIC W/Si ECAL"
    s2 = summarize(mc_file, chunk_size=1000)
    assert s2["visible_fraction_mean"] == pytest.approx(s["visible_fraction_mean"], rel=1e-12)
    text = format_summary(s)
    assert "96 events" in text and "E_vis/E" in text and "seed 7" in text


def _bad_file(tmp_path, kind):
    path = tmp_path / f"{kind}.h5"
    good = np.ones((4, 25, 25, 25), np.float32) * 1e-3
    with h5py.File(path, "w") as h5:
        if kind == "no_energy":
            h5["ECAL"] = good
        elif kind == "wrong_shape":
            h5["ECAL"] = np.ones((4, 25, 25), np.float32)
            h5["energy"] = np.ones(4)
        elif kind == "count_mismatch":
            h5["ECAL"] = good
            h5["energy"] = np.ones(3)
        elif kind == "nan_energy":
            h5["ECAL"] = good
            h5["energy"] = np.array([10, np.nan, 10, 10.0])
        elif kind == "negative_energy":
            h5["ECAL"] = good
            h5["energy"] = np.array([10, -5, 10, 10.0])
        elif kind == "nan_cells":
            bad = good.copy()
            bad[1, 0, 0, 0] = np.nan
            h5["ECAL"] = bad
            h5["energy"] = np.ones(4)
        elif kind == "negative_cells":
            bad = good.copy()
            bad[2, 3, 3, 3] = -1.0
            h5["ECAL"] = bad
            h5["energy"] = np.ones(4)
        elif kind == "unknown_keys":
            h5["foo"] = np.ones(3)
        elif kind == "string_energy":
            h5["ECAL"] = good
            h5["energy"] = np.array([b"10"] * 4)
        elif kind == "group_energy":
            h5["ECAL"] = good
            h5.create_group("energy")
        elif kind == "complex_cells":
            h5["ECAL"] = good.astype(np.complex64)
            h5["energy"] = np.ones(4)
    return path


@pytest.mark.parametrize("kind, message", [
    ("no_energy", "without primary energies"),
    ("wrong_shape", "expected \\(N, X, Y, Z\\)"),
    ("count_mismatch", "4 showers but 3"),
    ("nan_energy", "NaN"),
    ("negative_energy", "not positive|non-positive"),
    ("nan_cells", "NaN"),
    ("negative_cells", "negative"),
    ("unknown_keys", "unknown layout"),
    ("string_energy", "dataset 'energy' holds \\|S2, expected real numbers"),
    ("group_energy", "'energy' is a Group, expected a dataset"),
    ("complex_cells", "dataset 'ECAL' holds complex64, expected real numbers"),
])
def test_bad_files(tmp_path, kind, message):
    path = _bad_file(tmp_path, kind)
    with pytest.raises(UserError, match=message) as exc:
        summarize(path)
    assert str(path) in str(exc.value)


def test_not_hdf5_and_missing(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    with pytest.raises(UserError, match="not an HDF5 file"):
        summarize(text)
    with pytest.raises(UserError, match="no such file"):
        summarize(tmp_path / "missing.h5")


def _inflate_chunk(raw: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """An independent decoder of one stored chunk: zlib inflate, then HDF5's byte unshuffle
    (all first bytes of the float32 values, then all second bytes, ...)."""
    import zlib

    b = np.frombuffer(zlib.decompress(raw), np.uint8)
    return b.reshape(4, -1).T.copy().view(np.float32).reshape(shape)


def test_writer_chunks_are_standard_gzip_shuffle_whatever_the_threads(tmp_path, mc_small):
    images, energies = mc_small
    images = images[:150]
    paths = []
    for threads, splits in [(1, [150]), (3, [7, 100, 1, 42])]:
        path = tmp_path / f"t{threads}.h5"
        with ShowerWriter(path, compression=1, threads=threads, chunk_events=64) as w:
            lo = 0
            for n in splits:
                w.append(images[lo:lo + n], energies[lo:lo + n])
                lo += n
        paths.append(path)
    chunks = []
    for path in paths:
        with h5py.File(path, "r") as h:  # plain h5py, no plugin
            ds = h["ECAL"]
            assert ds.compression == "gzip" and ds.shuffle and ds.chunks == (64, 25, 25, 25)
            np.testing.assert_array_equal(ds[:], images)
            raw = [ds.id.read_direct_chunk((lo, 0, 0, 0)) for lo in (0, 64, 128)]
            chunks.append([r[1] for r in raw])
            assert all(mask == 0 for mask, _ in raw)
            # the last chunk is partial: 22 events and zero padding
            last = _inflate_chunk(raw[2][1], (64, 25, 25, 25))
            np.testing.assert_array_equal(last[:22], images[128:])
            assert not last[22:].any()
    assert chunks[0] == chunks[1]  # same bytes with 1 or 3 threads and other append sizes


def test_writer_calochallenge_and_plugin_codec(tmp_path, mc_small):
    images, energies = mc_small
    path = tmp_path / "cc.h5"
    with ShowerWriter(path, layout="calochallenge", compression=1, threads=2) as w:
        w.append(images[:70], energies[:70])
    with h5py.File(path, "r") as h:
        np.testing.assert_allclose(h["showers"][:], images[:70].reshape(70, -1) * 1e3,
                                   rtol=1e-6)
        np.testing.assert_allclose(h["incident_energies"][:, 0], energies[:70] * 1e3, rtol=1e-6)
    pytest.importorskip("hdf5plugin")
    lz = write_showers(tmp_path / "lz4.h5", images[:70], energies[:70], compression="lz4")
    with open_showers(lz) as f:  # caloforge's reader loads hdf5plugin itself
        np.testing.assert_array_equal(f.read()[0], images[:70])


def test_writer_bad_codec_leaves_no_file(tmp_path, mc_small):
    images, energies = mc_small
    with pytest.raises(UserError, match="compression 'zip'"):
        write_showers(tmp_path / "x.h5", images[:2], energies[:2], compression="zip")
    assert list(tmp_path.iterdir()) == []
