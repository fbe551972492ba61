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
    # 200 events, 135 features: too few sample sizes for the 1/N fit, so the FPD is the Frechet
    # distance at N = 200 (no error); it is a number, 0 for identical samples
    assert isinstance(same["fpd"], float) and same["fpd"] == pytest.approx(0.0, abs=1e-9)
    assert same["fpd_detail"]["n_max"] == 200
    worse = compare(t, event_features(images * np.float32(1.05), energies), seed=0,
                    classifier=False)
    worse2 = compare(t, event_features(images * np.float32(1.10), energies), seed=0,
                     classifier=False)
    assert 0 < worse["sep_power_mean"] < worse2["sep_power_mean"]
    assert 0 < worse["shape_metric"] < worse2["shape_metric"]
    assert 0 < worse["fpd"] < worse2["fpd"]


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


def _rotated_gaussians(n: int, seed: int):
    """Two 3-d Gaussians whose covariances do not commute (the second rotated by 45 degrees)."""
    c = np.cos(np.pi / 4)
    rot = np.eye(3)
    rot[:2, :2] = [[c, -c], [c, c]]
    s1 = np.diag([4.0, 0.25, 1.0])
    s2 = rot @ np.diag([4.0, 0.25, 2.0]) @ rot.T
    mu = np.array([0.5, 0.0, -0.3])
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3)) @ np.linalg.cholesky(s1).T
    y = mu + rng.standard_normal((n, 3)) @ np.linalg.cholesky(s2).T
    return x, y, s1, s2, mu


def test_fpd_matches_the_closed_form() -> None:
    """Frechet distance of N(mu1, S1) and N(mu2, S2): |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2)
    (Dowson & Landau 1982), with scipy's general matrix square root: 2.369 here. The sample
    estimate at N = 20k scatters by ~0.026 between samples (measured over 20 seeds; FPD's own
    error, the residual of the 1/N fit, is smaller): within 0.1. The tempting
    Tr(S1^1/2 S2^1/2) instead of Tr((S1 S2)^1/2) would give 2.762."""
    from scipy.linalg import sqrtm

    x, y, s1, s2, mu = _rotated_gaussians(20000, seed=4)
    exact = float(mu @ mu + np.trace(s1 + s2 - 2 * np.real(sqrtm(s1 @ s2))))
    assert exact == pytest.approx(2.3689, abs=1e-4)
    assert frechet_distance(x, y) == pytest.approx(exact, abs=0.1)
    f = fpd(x, y, seed=0)
    assert isinstance(f["value"], float) and f["value"] == pytest.approx(exact, abs=0.1)
    assert f["error"] >= 0


def _mmd2_brute_force(x, y):
    """Unbiased MMD^2 with k(a, b) = (a.b/d + 1)^3, pair by pair (Gretton et al. 2012, eq. 3)."""
    d = x.shape[1]

    def k(a, b):
        return (float(np.dot(a, b)) / d + 1.0) ** 3

    m, n = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return kxx + kyy - 2 * kxy


def test_kpd_is_the_unbiased_polynomial_mmd() -> None:
    from caloforge.physics.distances import _mmd2_unbiased_poly

    rng = np.random.default_rng(5)
    x = rng.normal(size=(50, 3))
    y = rng.normal(0.3, 1.2, size=(70, 3))   # unequal sizes: m and n must not be mixed up
    assert _mmd2_unbiased_poly(x, y) == pytest.approx(_mmd2_brute_force(x, y), rel=1e-10)
    # the block average estimates the same quantity as the brute force on whole samples
    x = rng.normal(size=(400, 3))
    y = rng.normal(0.3, 1.2, size=(400, 3))
    k = kpd(x, y, block_size=100, n_blocks=20, seed=0)
    assert k["block_size"] == 100 and k["error"] > 0
    full = _mmd2_brute_force(x, y)
    assert full > 0.5 and k["value"] == pytest.approx(full, abs=4 * k["error"])
    # a sample smaller than two blocks: blocks of half of it, so the error is not zero
    small = kpd(x[:150], y[:150], block_size=100, n_blocks=5, seed=0)
    assert small["block_size"] == 75 and small["error"] > 0


@pytest.mark.parametrize("shift", [0.5, 1.0])
def test_auc_of_two_gaussians(shift) -> None:
    """The best classifier of N(0, I) vs N(delta, I) has AUC = Phi(|delta| / sqrt(2)) (0.638 and
    0.760). No classifier can beat it (up to the test split's noise, ~0.011 for 1,200 test events
    per class): at most +0.03. Boosted trees trained on 2,800 events per class reach it to
    within 0.018-0.024 (mean over 6 seeds, spread 0.011; a diagonal boundary is staircased):
    at least -0.06. Swapped labels (0.36 / 0.24) or an AUC on the training events (0.80 / 0.85)
    fail."""
    from scipy.stats import norm

    rng = np.random.default_rng(6)
    delta = shift * np.array([0.6, 0.8])          # |delta| = shift, along a diagonal
    ref = rng.normal(size=(4000, 2))
    cand = rng.normal(size=(4000, 2)) + delta
    auc = classifier_auc(ref, cand, seed=0)["auc"]
    best = norm.cdf(shift / np.sqrt(2))
    assert best - 0.06 < auc < best + 0.03, (auc, best)


def test_the_classifier_per_feature_group_finds_the_group_that_differs(mc_small) -> None:
    """A candidate equal to the reference except for wider layers (every per-layer width x1.5):
    the widths alone separate it (AUC near 1), the other groups -- identical numbers -- do
    not; the groups partition the high-level features."""
    from caloforge.physics.observables import FeatureTable
    from caloforge.physics.validate import feature_groups

    images, energies = mc_small
    t = event_features(images, energies)
    cols = dict(t.columns)
    for a in ("x", "y"):
        cols[f"width_{a}"] = cols[f"width_{a}"] * np.float32(1.5)
    wide = FeatureTable(cols, t.grid, t.hit_threshold, dict(t.extra), t.scan_threshold)
    res = compare(t, wide, seed=0)
    groups = res["classifier_auc_groups"]
    assert set(groups) == {"scalars", "layer fractions", "centroids", "widths"}
    assert groups["widths"]["auc"] > 0.9 and groups["widths"]["features"] == 50
    for g in ("scalars", "layer fractions", "centroids"):
        assert abs(groups[g]["auc"] - 0.5) < 0.15, g
    names = t.high_level()[1]
    idx = sorted(i for v in feature_groups(names).values() for i in v)
    assert idx == list(range(len(names)))
