"""Separation power, FPD, KPD and the classifier test."""

from __future__ import annotations

import numpy as np
import pytest

from caloforge.errors import UserError
from caloforge.physics import (
    classifier_auc,
    compare,
    event_features,
    fpd,
    frechet_distance,
    kpd,
    separation_power,
    separation_power_hist,
    standardise,
)


def test_separation_power_values() -> None:
    assert separation_power_hist([1, 1, 0], [1, 1, 0]) == 0.0
    assert separation_power_hist([1, 0], [0, 1]) == 1.0
    # h1 = (0.5, 0.5), h2 = (1, 0): 1/2 [0.25/1.5 + 0.25/0.5] = 1/3
    assert separation_power_hist([1, 1], [2, 0]) == pytest.approx(1 / 3)
    rng = np.random.default_rng(1)
    a = rng.normal(size=5000)
    assert separation_power(a, a) == 0.0
    assert separation_power(a, a + 10) == pytest.approx(1.0)
    s1, s2 = separation_power(a, a + 0.2), separation_power(a, a + 0.5)
    assert 0 < s1 < s2 < 1
    # integer feature: one bin per value
    assert separation_power(np.array([1.0, 2, 2, 3]), np.array([1.0, 2, 2, 3])) == 0.0
    with pytest.raises(UserError):
        separation_power(np.array([]), a)


def test_frechet_and_kernel_distances() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3000, 5))
    y = rng.normal(size=(3000, 5))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    # Gaussians N(0, I) and N(m, I): FD = |m|^2
    assert frechet_distance(x, x + 1.0) == pytest.approx(5.0, rel=1e-6)
    f0 = fpd(x, y, seed=0)
    f1 = fpd(x, y + 0.3, seed=0)
    assert abs(f0["value"]) < 0.02 and f1["value"] == pytest.approx(0.45, abs=0.05)
    k0, k1 = kpd(x, y, block_size=500), kpd(x, y + 0.3, block_size=500)
    assert abs(k0["value"]) < 3 * k0["error"] + 1e-3
    assert k1["value"] > 10 * k1["error"]
    (xs, ys), keep = standardise(np.hstack([x, np.ones((3000, 1))]),
                                 np.hstack([y, np.ones((3000, 1))]), method="zscore")
    assert keep.tolist() == [True] * 5 + [False] and xs.shape == ys.shape == (3000, 5)
    with pytest.raises(UserError):
        fpd(x[:5], y[:5])


def test_classifier_auc(mc_small) -> None:
    images, energies = mc_small
    t = event_features(images, energies)
    x, _ = t.high_level()
    same = classifier_auc(x, x.copy(), seed=0)["auc"]
    assert abs(same - 0.5) < 0.15
    rolled = event_features(np.roll(images, 2, axis=3), energies).high_level()[0]
    assert classifier_auc(x, rolled, seed=0)["auc"] > 0.9


def test_compare_identical_and_distorted(mc_small) -> None:
    images, energies = mc_small
    t = event_features(images, energies)
    same = compare(t, t, seed=0)
    assert same["shape_metric"] == 0.0 and same["sep_power_mean"] == 0.0
    assert abs(same["classifier_auc"] - 0.5) < 0.15
    assert same["fpd"] is None or abs(same["fpd"]) < 1e-6  # 200 events < features: skipped
    worse = compare(t, event_features(images * np.float32(1.05), energies), seed=0,
                    classifier=False)
    worse2 = compare(t, event_features(images * np.float32(1.10), energies), seed=0,
                     classifier=False)
    assert 0 < worse["sep_power_mean"] < worse2["sep_power_mean"]
    assert 0 < worse["shape_metric"] < worse2["shape_metric"]


def test_quantile_standardisation() -> None:
    rng = np.random.default_rng(3)
    ref = np.column_stack([rng.standard_cauchy(4000), rng.exponential(size=4000),
                           np.zeros(4000)])
    cand = ref[:100] * 2.0
    (zr, zc), keep = standardise(ref, cand)
    assert keep.tolist() == [True, True, False]
    assert np.allclose(zr.mean(axis=0), 0, atol=1e-3) and np.allclose(zr.std(axis=0), 1, atol=0.02)
    assert np.isfinite(zc).all() and np.abs(zc).max() < 4
    # order preserving
    o = np.argsort(ref[:, 0])
    assert np.all(np.diff(zr[o, 0]) >= 0)
