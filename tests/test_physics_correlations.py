"""Feature correlations per energy band: against the closed form of a Gaussian's rank
correlation, with trends in ln E that must not count, and the small-sample fallback."""

from __future__ import annotations

import math

import numpy as np
import pytest

from caloforge.physics.correlations import (
    JOINT_FEATURES,
    MIN_BAND_EVENTS,
    correlation_difference,
    rank_correlations,
    trend_residuals,
)
from caloforge.physics.observables import FeatureTable
from caloforge.physics.verdict import verdict


def spearman_of_gaussian(rho: float) -> float:
    """Rank correlation of a bivariate normal with correlation ``rho``: (6 / pi) asin(rho / 2)
    (Pearson, Biometrika 1907; Kendall & Stuart)."""
    return 6.0 / math.pi * math.asin(rho / 2.0)


def table(n: int, rho: float, seed: int, trend: float = 1.0) -> FeatureTable:
    """Scalar features at uniform 2-500 GeV: independent unit normals, except ``n_hits`` and
    ``m2_x`` with correlation ``rho``, all plus a common trend ``trend x (ln E)^2`` that makes
    their *raw* correlations ~1."""
    rng = np.random.default_rng(seed)
    e = rng.uniform(2.0, 500.0, n)
    le = np.log(e)
    cols = {f: rng.standard_normal(n) + trend * le * le for f in JOINT_FEATURES}
    a, b = rng.standard_normal(n), rng.standard_normal(n)
    cols["n_hits"] = a + trend * le * le
    cols["m2_x"] = rho * a + math.sqrt(1 - rho * rho) * b + 3.0 * trend * le
    cols["e_primary"] = e
    return FeatureTable(cols, (25, 25, 25))


def test_rank_correlation_of_a_gaussian_pair_matches_the_closed_form() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 200_000))
    x = np.stack([a, 0.6 * a + 0.8 * b], axis=1)
    assert rank_correlations(x)[0, 1] == pytest.approx(spearman_of_gaussian(0.6), abs=0.005)
    # monotone transforms leave ranks alone: a long-tailed second moment reads the same
    x2 = np.stack([np.exp(3 * a), 0.6 * a + 0.8 * b], axis=1)
    assert rank_correlations(x2)[0, 1] == pytest.approx(rank_correlations(x)[0, 1], abs=1e-12)


def test_trend_residuals_remove_a_quadratic_in_ln_e_exactly() -> None:
    le = np.linspace(0.5, 6.0, 50)
    y = np.stack([2 - 3 * le + 0.5 * le ** 2, np.ones_like(le)], axis=1)
    np.testing.assert_allclose(trend_residuals(y, le), 0.0, atol=1e-9)


def test_the_pair_that_moves_differently_is_found_with_its_size() -> None:
    ref, cand = table(9000, 0.8, seed=2), table(9000, 0.2, seed=3, trend=2.0)
    same = table(9000, 0.8, seed=14, trend=2.0)
    d, d0 = correlation_difference(ref, cand), correlation_difference(ref, same)
    expected = spearman_of_gaussian(0.8) - spearman_of_gaussian(0.2)            # 0.595
    assert d["corr_detail"]["largest"]["pair"] == "m2_x-n_hits"
    assert d["corr_max_diff"] == pytest.approx(expected, abs=0.06)
    # one pair of 36 differs by 0.595 (per band); the other 35 add the same noise to both
    n_pairs = len(JOINT_FEATURES) * (len(JOINT_FEATURES) - 1) // 2
    assert d["corr_mean_diff"] - d0["corr_mean_diff"] == pytest.approx(expected / n_pairs,
                                                                       abs=0.006)
    assert len(d["corr_detail"]["bands"]) == 3


def test_fixed_energies_are_never_split_by_a_band_edge() -> None:
    e = np.repeat([10.0, 50.0, 100.0], [1001, 1000, 1000])          # N = 3001: a tertile hits ln 10
    def fixed(seed: int) -> FeatureTable:
        r = np.random.default_rng(seed)
        cols = {f: r.standard_normal(len(e)) for f in JOINT_FEATURES}
        cols["e_primary"] = e[r.permutation(len(e))] if seed else e
        return FeatureTable(cols, (25, 25, 25))
    d = correlation_difference(fixed(0), fixed(16))
    bands = d["corr_detail"]["bands"]
    np.testing.assert_allclose([b["energy_gev"] for b in bands],
                               [[10.0, 10.0], [50.0, 50.0], [100.0, 100.0]], rtol=1e-12)
    assert [b["n_reference"] for b in bands] == [1001, 1000, 1000]


def test_a_feature_that_is_a_function_of_the_energy_alone_has_no_correlations() -> None:
    # at three energies a quadratic in ln E explains it exactly: rounding must not get ranks
    ref, cand = table(3000, 0.5, seed=17), table(3000, 0.5, seed=18)
    e = np.repeat([10.0, 50.0, 100.0], 1000)
    for t in (ref, cand):
        t.columns["e_primary"] = e
    cand.columns["m2_x"] = 0.3 * np.log(e) ** 2 + 1.0
    d = correlation_difference(ref, cand)
    rows = [r for b in d["corr_detail"]["bands"] for r in b["largest"] if "m2_x" in r["pair"]]
    # the candidate's m2_x moves with nothing: it is charged the reference's 0.5 correlation
    assert any(r["pair"] == "m2_x-n_hits" and r["candidate"] == 0.0 for r in rows)


def test_events_without_a_positive_energy_are_left_out_not_a_crash() -> None:
    ref, cand = table(3000, 0.5, seed=19), table(3000, 0.5, seed=20)
    cand.columns["e_primary"] = cand.columns["e_primary"].copy()
    cand.columns["e_primary"][:5] = [0.0, -1.0, np.nan, np.inf, 0.0]
    d = correlation_difference(ref, cand)
    assert math.isfinite(d["corr_mean_diff"])
    assert sum(b["n_candidate"] for b in d["corr_detail"]["bands"]) == 2995


def test_a_second_sample_of_the_same_physics_is_at_the_noise_level() -> None:
    # different trends in ln E (a wrong mean response) are not a correlation difference
    d = correlation_difference(table(9000, 0.5, seed=4), table(9000, 0.5, seed=5, trend=3.0))
    assert d["corr_max_diff"] < 0.1
    assert d["corr_mean_diff"] < 0.03


def test_too_few_events_merge_the_bands_then_skip_with_a_note() -> None:
    n = MIN_BAND_EVENTS + 150      # enough for one band, not for two (or three)
    d = correlation_difference(table(n, 0.5, seed=6), table(n, 0.5, seed=7))
    assert len(d["corr_detail"]["bands"]) == 1
    small = correlation_difference(table(MIN_BAND_EVENTS - 1, 0.5, seed=6),
                                   table(MIN_BAND_EVENTS - 1, 0.5, seed=7))
    assert small["corr_mean_diff"] is None and "not compared" in small["corr_detail"]["note"]


def test_a_constant_feature_moves_with_nothing() -> None:
    ref, cand = table(3000, 0.5, seed=8), table(3000, 0.5, seed=9)
    for t in (ref, cand):
        t.columns["sparsity"] = np.zeros(len(t))
    d = correlation_difference(ref, cand)
    assert math.isfinite(d["corr_mean_diff"]) and d["corr_mean_diff"] < 0.05
    # constant in the candidate only: its pairs are charged the reference's correlation
    cand.columns["n_hits"] = np.zeros(len(cand))
    d2 = correlation_difference(ref, cand)
    worst = d2["corr_detail"]["largest"]
    assert worst["pair"] == "m2_x-n_hits"
    assert d2["corr_max_diff"] == pytest.approx(spearman_of_gaussian(0.5), abs=0.08)


def test_correlations_far_above_their_floor_make_the_verdict_incompatible() -> None:
    floor = {"sep_power_mean": 0.002, "corr_mean_diff": 0.015}
    cand = {"sep_power_mean": 0.002, "corr_mean_diff": 0.06}
    v = verdict(cand, floor)
    assert v["level"] == "incompatible" and v["far"] == ["corr_mean_diff"]
    assert "feature correlations 4x" in v["line"]


def test_the_correlation_plot_is_written_with_and_without_enough_events(tmp_path) -> None:
    from caloforge.physics.plots import plot_correlations

    tables = {"reference": table(3000, 0.8, seed=10), "candidate": table(3000, 0.2, seed=11),
              "floor": table(3000, 0.8, seed=12)}
    path = plot_correlations(tables, tmp_path / "corr.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    few = {k: table(50, 0.5, seed=13) for k in ("reference", "candidate")}
    assert plot_correlations(few, tmp_path / "few.png").is_file()
