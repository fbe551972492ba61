"""The per-energy scan of ``validate``: layer calibration against the MC's true deposit, bins,
differences of known distortions."""

from __future__ import annotations

import numpy as np
import pytest

from caloforge.detector import clic_ecal
from caloforge.physics import event_features
from caloforge.physics.energy_scan import energy_bins, energy_scan

F = np.asarray(clic_ecal().layer_sampling_fraction)


def test_calibrated_energy_measures_the_true_deposit(mc_small_bookkeeping) -> None:
    """E_cal = sum_l E_l / f_l estimates the energy deposited in the calorimeter: per energy its
    mean equals the MC's bookkept deposit / E within 3 standard errors (sampling fluctuations are
    unbiased, ~3% per event at 10 GeV -> 0.4% on the mean of 67). The raw sum weighted by the
    front sampling fraction alone undercounts the back section (1/1.97 of the sampling) and
    misses it by 7-15%."""
    images, energies, book = mc_small_bookkeeping
    t = event_features(images, energies)
    scan = energy_scan({"reference": t, "candidate": t}, F)
    assert scan["centres"] == [10.0, 50.0, 100.0]
    wrong = energy_scan({"reference": t, "candidate": t}, np.full(25, F[0]))
    for i, e0 in enumerate(scan["centres"]):
        sel = energies == e0
        truth = book["deposited"][sel] / e0
        row = scan["bins"]["reference"][i]
        assert row["n"] == sel.sum()
        assert row["response"] == pytest.approx(truth.mean(), abs=3 * row["response_err"])
        assert 0.06 < truth.mean() - wrong["bins"]["reference"][i]["response"] < 0.2
        # the calibrated width is the sampling resolution c_S/sqrt(E) (+ leakage), well below
        # the ~5% of the raw sum, whose width is the energy moving between the two sections
        raw = images[sel].sum(axis=(1, 2, 3), dtype=np.float64) / e0
        assert row["resolution"] < 0.8 * raw.std() / raw.mean()
        # hits above 10 keV and the shower-maximum layer, recounted here
        assert row["hits"] == pytest.approx((images[sel] > 1e-5).sum(axis=(1, 2, 3)).mean())
        assert row["shower_max"] == pytest.approx(images[sel].sum(axis=(1, 2)).argmax(axis=1).mean())


def test_differences_of_known_distortions(mc_small) -> None:
    images, energies = mc_small
    ref = event_features(images, energies)
    scaled = event_features(images * np.float32(1.05), energies)
    deeper = event_features(np.roll(images, 2, axis=3), energies)  # 2 layers deeper
    scan = energy_scan({"reference": ref, "scaled": scaled, "deeper": deeper}, F)
    for d in scan["diffs"]["scaled"]:
        assert d["d_response"] == pytest.approx(0.05, abs=1e-6)   # +5% exactly
        assert d["d_resolution"] == pytest.approx(0.0, abs=1e-6)  # a scale does not widen
        assert d["d_shower_max"] == 0.0 and d["d_hits"] >= 0
        assert not d["ok_response"] and d["ok_resolution"]
    for d in scan["diffs"]["deeper"]:
        assert d["d_shower_max"] == pytest.approx(2.0, abs=0.05) and not d["ok_shower_max"]
    assert scan["worst"]["scaled"]["response"]["value"] == pytest.approx(0.05, abs=1e-6)


def test_bins_adapt_to_the_energies() -> None:
    rng = np.random.default_rng(0)
    cont = rng.uniform(2, 500, 5000)
    centres, edges = energy_bins(cont)
    assert centres.tolist() == [2, 5, 10, 20, 50, 100, 200, 400]
    # edges at the geometric midpoints: 10 GeV collects 7.07-14.1 GeV
    assert edges[2:4] == pytest.approx([np.sqrt(50), np.sqrt(200)])
    assert edges[-1] == pytest.approx(400 * 400 / np.sqrt(80000))
    centres, edges = energy_bins(np.resize([5.0, 60.0, 300.0], 90))
    assert centres.tolist() == [5, 60, 300]
    assert np.all(np.diff(np.searchsorted(edges, [5.0, 60.0, 300.0])) == 1)
