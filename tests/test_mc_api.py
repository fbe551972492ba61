"""The Monte Carlo API: determinism, chunk independence, energies, options, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from caloforge.data import open_showers
from caloforge.detector import SILICON, TUNGSTEN, homogeneous_ecal, pb_lar_ecal, sampling_ecal
from caloforge.errors import UserError
from caloforge.mc import SUPPORTED_RANGE, sample_energies, simulate, simulate_to_file


def test_same_seed_bit_identical_and_chunk_independent():
    e = sample_energies(40, (5.0, 60.0), seed=3)
    a, ea = simulate(e, seed=5)
    b, eb = simulate(e, seed=5)
    assert np.array_equal(a, b) and np.array_equal(ea, eb)
    part, _ = simulate(e[:13], seed=5)
    rest, _ = simulate(e[13:], seed=5, first_event=13)
    assert np.array_equal(np.concatenate([part, rest]), a)


def test_different_seed_differs():
    e = np.full(4, 20.0)
    a, _ = simulate(e, seed=1)
    b, _ = simulate(e, seed=2)
    assert not np.array_equal(a, b)
    # and events within one run differ from each other
    assert not np.array_equal(a[0], a[1])


def test_sample_energies():
    e = sample_energies(3000, (2.0, 500.0), seed=1)
    assert e.min() >= 2.0 and e.max() <= 500.0 and e.dtype == np.float64
    assert abs(e.mean() - 251.0) < 10.0  # uniform: sd of the mean = 143/sqrt(3000) = 2.6
    np.testing.assert_array_equal(sample_energies(100, (2.0, 500.0), seed=1, first_event=1000),
                                  e[1000:1100])
    assert not np.array_equal(sample_energies(10, (2.0, 500.0), seed=2), e[:10])
    np.testing.assert_array_equal(sample_energies(5, energies=[10, 50]), [10, 50, 10, 50, 10])
    np.testing.assert_array_equal(sample_energies(2, energies=[10, 50], first_event=3), [50, 10])
    assert sample_energies(5).min() >= 2.0  # default 3DGAN range


@pytest.mark.parametrize("bad", [np.nan, np.inf, -10.0, 0.0, 0.5, 2000.0])
def test_bad_energies_rejected(bad):
    with pytest.raises(UserError, match="energies"):
        simulate(np.array([10.0, bad]))


def test_bad_options():
    with pytest.raises(TypeError):
        simulate(np.array([10.0]), nonsense=1)
    with pytest.raises(UserError, match="seed"):
        simulate(np.array([10.0]), seed=-1)
    with pytest.raises(UserError, match="range"):
        sample_energies(3, (50.0, 10.0))
    with pytest.raises(UserError, match="outside"):
        sample_energies(3, (0.1, 10.0))
    assert SUPPORTED_RANGE == (1.0, 1000.0)


def test_empty_input():
    images, energies = simulate(np.array([]))
    assert images.shape == (0, 25, 25, 25) and energies.shape == (0,)


@pytest.mark.parametrize("make", [homogeneous_ecal, pb_lar_ecal,
                                  lambda: sampling_ecal("small", TUNGSTEN, SILICON, [(10, 3.5)],
                                                        1.0, 7.0, n_cells=(11, 13))])
def test_other_detectors(make):
    det = make()
    images, e, book = simulate(np.array([20.0, 200.0]), seed=1, detector=det,
                               return_bookkeeping=True)
    assert images.shape == (2, *det.grid)
    assert np.isfinite(images).all() and (images >= 0).all()
    np.testing.assert_allclose(book["deposited"] + book["leak_back"] + book["leak_side"], e)
    frac = book["visible"] / book["expected_visible"]
    assert np.all(np.abs(frac - 1) < 0.3)


def test_simulate_to_file_chunk_independent(tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    ra = simulate_to_file(a, 50, energy_range=(5, 80), seed=9, chunk_size=7, progress=False)
    simulate_to_file(b, 50, energy_range=(5, 80), seed=9, chunk_size=50, progress=False)
    with open_showers(a) as fa, open_showers(b) as fb:
        ia, ea = fa.read()
        ib, eb = fb.read()
        attrs = fa.attrs
    assert np.array_equal(ia, ib) and np.array_equal(ea, eb)
    direct, de = simulate(sample_energies(50, (5, 80), seed=9), seed=9)
    assert np.array_equal(direct, ia)
    np.testing.assert_allclose(de, ea, rtol=1e-6)  # energies stored as float32
    assert attrs["generator"] == "caloforge-mc-gflash" and attrs["seed"] == 9
    assert attrs["detector"]["name"] == "CLIC W/Si ECAL" and attrs["units"] == "GeV"
    assert "caloforge_version" in attrs
    assert ra["n_events"] == 50 and 0.015 < ra["mean_visible_fraction"] < 0.025


def test_simulate_to_file_bad_input_leaves_nothing(tmp_path):
    out = tmp_path / "x.h5"
    with pytest.raises(UserError, match="number of events must be positive, got 0"):
        simulate_to_file(out, 0, progress=False)
    with pytest.raises(UserError, match="NaN"):
        simulate_to_file(out, 5, energies=np.array([np.nan]), progress=False)
    (tmp_path / "regular").write_text("x")
    with pytest.raises(UserError, match="is not a directory"):
        simulate_to_file(tmp_path / "regular" / "x.h5", 5, progress=False)
    (tmp_path / "regular").unlink()
    with pytest.raises(UserError, match="does not exist"):
        simulate_to_file(tmp_path / "no" / "x.h5", 5, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_entry_smear():
    e = np.full(60, 30.0)
    plain, _ = simulate(e, seed=4)
    zero, _ = simulate(e, seed=4, entry_smear_mm=0.0)
    assert np.array_equal(plain, zero)
    smeared, _ = simulate(e, seed=4, entry_smear_mm=20.0)
    x = np.arange(25)

    def centroid_sd(images):
        prof = images.sum(axis=(2, 3))
        return (prof @ x / prof.sum(axis=1)).std()

    # uniform over 20 mm = 3.9 cells: sd 1.13 cells (60 events: +-10%); centred beam: ~0.1 cells
    assert centroid_sd(plain) < 0.3
    assert 0.8 < centroid_sd(smeared) < 1.5
    with pytest.raises(UserError, match="entry_smear_mm"):
        simulate(e[:1], entry_smear_mm=-1.0)


def test_seed_outside_the_64_bit_range_is_a_user_error(tmp_path):
    for seed in (2**64, -1, 1.5):
        with pytest.raises(UserError, match=r"seed: expected an integer in 0\.\.2\*\*64-1"):
            simulate_to_file(tmp_path / "x.h5", 2, energies=np.array([50.0]), seed=seed,
                             progress=False)
        with pytest.raises(UserError, match="seed"):
            sample_energies(2, (5.0, 60.0), seed=seed)
    assert list(tmp_path.iterdir()) == []
    simulate_to_file(tmp_path / "x.h5", 1, energies=np.array([50.0]), seed=2**64 - 1,
                     progress=False)


def test_more_events_than_the_memory_holds_are_refused_before_allocating(tmp_path):
    from caloforge.resources import memory_bytes

    n = memory_bytes() // (25**3 * 4) + 1  # float32 images alone exceed the memory
    with pytest.raises(UserError, match="exceed the machine's memory"):
        simulate_to_file(tmp_path / "x.h5", n, energies=np.array([50.0]), chunk_size=n,
                         progress=False)
    with pytest.raises(UserError, match="exceed the machine's memory"):
        simulate(np.broadcast_to(50.0, (n,)), seed=1)
    assert list(tmp_path.iterdir()) == []
