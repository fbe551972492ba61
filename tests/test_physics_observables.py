"""Observables: per-event features, streaming over files, accumulators."""

from __future__ import annotations

import numpy as np
import pytest

from caloforge.physics import (
    FeatureTable,
    LogHistogram,
    ProfileAccumulator,
    event_features,
    features_from_file,
)


def test_features_of_a_simple_shower() -> None:
    img = np.zeros((2, 5, 5, 4), np.float32)
    img[0, 2, 2, 1] = 3.0       # 3 GeV in the central column, layer 1
    img[0, 3, 2, 1] = 1.0       # 1 GeV one cell to +x
    img[0, 2, 2, 3] = 1e-4      # below the hit threshold
    # event 1 is empty
    t = event_features(img, np.array([10.0, 20.0]))
    assert t["e_vis"] == pytest.approx([4.0001, 0.0])
    assert t["e_ratio"] == pytest.approx([0.40001, 0.0])
    assert t["n_hits"].tolist() == [2.0, 0.0]
    assert t["sparsity"][1] == 1.0 and t["sparsity"][0] == pytest.approx(1 - 3 / 100)
    assert t["max_x"][0] == 2 and t["max_z"][0] == 1
    assert t["m1_x"][0] == pytest.approx((2 * 3 + 3 * 1 + 2 * 1e-4) / 4.0001, rel=1e-6)
    # per-layer: layer 1 has 4 GeV, centre 0.25 cells to +x of the grid centre, width sqrt(3)/4
    assert t["e_layer"][0].tolist() == pytest.approx([0, 4, 0, 1e-4])
    assert t["ec_x"][0, 1] == pytest.approx(0.25)
    assert t["ec_y"][0, 1] == pytest.approx(0.0)
    assert t["width_x"][0, 1] == pytest.approx(np.sqrt(3) / 4, rel=1e-6)
    # the empty event: everything 0, nothing NaN
    for name, col in t.columns.items():
        assert np.isfinite(col).all(), name
    assert t["m1_x"][1] == 0 and t["width_x"][1].max() == 0
    x, names = t.high_level()
    assert x.shape == (2, len(names)) and np.isfinite(x).all()


def test_mc_features_are_physical(mc_small) -> None:
    images, energies = mc_small
    t = event_features(images, energies)
    assert len(t) == len(energies)
    # shower maximum moves deeper with energy (ln E), centred transversally
    m10 = t["m1_z"][energies == 10.0].mean()
    m100 = t["m1_z"][energies == 100.0].mean()
    assert m100 > m10
    assert abs(t["m1_x"].mean() - 12) < 1 and abs(t["ec_x"][:, :10].mean()) < 0.5
    assert (t["e_ratio"] > 0).all() and (t["e_ratio"] < 1).all()


def test_streaming_matches_in_memory(mc_file) -> None:
    from caloforge.data import read_showers

    images, energies = read_showers(mc_file)
    whole = event_features(images, energies)
    spec = LogHistogram()
    streamed = features_from_file(mc_file, chunk_size=7, spectrum=spec)
    for k in whole.columns:
        np.testing.assert_allclose(streamed[k], whole[k], rtol=1e-6, err_msg=k)
    assert spec.counts.sum() + spec.n_zero == images.size
    part = features_from_file(mc_file, max_events=10, chunk_size=4)
    assert len(part) == 10
    cat = FeatureTable.concatenate([part, part.select(np.arange(3))])
    assert len(cat) == 13


def test_accumulators() -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(size=(100, 4))
    g = (np.arange(100) % 2).astype(int)
    acc = ProfileAccumulator(4, 2)
    acc.add(v[:30], g[:30])
    acc.add(v[30:], g[30:])
    np.testing.assert_allclose(acc.mean(1), v[g == 1].mean(axis=0))
    np.testing.assert_allclose(acc.std(0), v[g == 0].std(axis=0))
    h = LogHistogram(1e-3, 1e3, 6)
    h.add(np.array([0.0, 0.0, 5e-4, 2e-3, 0.5, 5e3]))
    assert h.n_zero == 2
    assert h.counts.tolist() == [2, 0, 1, 0, 0, 1]
