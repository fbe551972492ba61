"""The verdict: ratios to the floor computed by hand, and the rule that a candidate is never
called compatible while a distribution-level metric is far above its floor."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from caloforge.physics.verdict import auc_error, metric_rows, ratio_to_floor, verdict

FLOOR = {"shape_metric": 0.04, "sep_power_mean": 0.002, "sep_power_spectrum": 1e-5,
         "fpd": -0.01, "fpd_error": 0.005, "kpd": -0.001, "kpd_error": 0.0006,
         "classifier_auc": 0.51, "classifier_auc_error": 0.01,
         "scan_response": 0.004, "scan_response_error": 0.002,
         "scan_resolution": 0.10, "scan_resolution_error": 0.05,
         "scan_hits": 0.02, "scan_hits_error": 0.01,
         "scan_shower_max": 0.3, "scan_shower_max_error": 0.2}


def _cand(**over):
    c = dict(FLOOR)
    c.update(over)
    return c


def test_ratio_by_hand() -> None:
    # positive metric without errors: value / floor
    assert ratio_to_floor(0.006, 0.002) == pytest.approx(3.0)
    # unbiased metric with floor ~0: noise = 2 * the larger error
    assert ratio_to_floor(0.05, -0.01, 0.0, 0.004, 0.005) == pytest.approx(0.05 / 0.01)
    # AUC: excess over 0.5, against max(|0.51 - 0.5|, 2 * 0.01, 2 * 0.01) = 0.02
    assert ratio_to_floor(0.56, 0.51, 0.5, 0.01, 0.01) == pytest.approx(3.0)
    assert ratio_to_floor(0.0, 0.0) == 0.0 and math.isinf(ratio_to_floor(0.1, 0.0))


def test_auc_error_at_chance_is_the_mann_whitney_variance() -> None:
    # under H0 the Mann-Whitney U has variance n1 n2 (n1 + n2 + 1) / 12, so
    # Var(AUC) = (n1 + n2 + 1) / (12 n1 n2); Hanley-McNeil gives this to O(1/n)
    n1, n2 = 900, 1100
    exact = math.sqrt((n1 + n2 + 1) / (12 * n1 * n2))
    assert auc_error(0.5, n1, n2) == pytest.approx(exact, rel=0.01)
    # and the spread of AUCs of random scores is that large
    rng = np.random.default_rng(0)
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.zeros(n1), np.ones(n2)]
    aucs = [roc_auc_score(y, rng.random(n1 + n2)) for _ in range(300)]
    assert np.std(aucs) == pytest.approx(exact, rel=0.15)


def test_same_as_floor_is_compatible() -> None:
    v = verdict(_cand(), FLOOR)
    assert v["level"] == "compatible" and v["far"] == []
    assert "worst metric/floor ratio" in v["line"]


@pytest.mark.parametrize("key,value", [
    ("classifier_auc", 0.80),        # above 0.75 whatever the floor
    ("sep_power_mean", 0.0061),      # 3.05x
    ("kpd", 0.0040),                 # 4.0 / (2 * 0.6e-3 * ...) > 3
    ("scan_resolution", 0.31),       # 3.1x the floor's worst bin
    ("scan_hits", 0.07),             # 3.5x
    ("fpd", 0.2),
])
def test_one_far_metric_is_never_compatible(key, value) -> None:
    v = verdict(_cand(**{key: value}), FLOOR)
    assert v["level"] == "incompatible" and key in v["far"], v["line"]
    assert v["line"].startswith("NOT compatible")


def test_moderate_excess_is_resolved_not_compatible() -> None:
    v = verdict(_cand(sep_power_mean=0.005), FLOOR)     # 2.5x: between 2 and 3
    assert v["level"] == "resolved" and v["worst"] == "sep_power_mean"
    assert "2.5x (mean separation power)" in v["line"]


def test_sub_terms_do_not_count_but_shape_metric_does() -> None:
    f = dict(FLOOR, shape_profile_term=0.01)
    assert verdict(_cand(shape_profile_term=0.5), f)["level"] == "compatible"
    assert verdict(_cand(shape_metric=0.2), FLOOR)["level"] == "incompatible"


def test_no_floor() -> None:
    assert verdict(_cand(), None)["level"] == "unknown"
    v = verdict(_cand(classifier_auc=0.9), None)
    assert v["level"] == "incompatible" and "classifier AUC 0.900" in v["line"]


def test_auc_error_from_sample_sizes() -> None:
    c = _cand(classifier_auc=0.53)
    del c["classifier_auc_error"]
    f = dict(FLOOR)
    del f["classifier_auc_error"]
    row = next(r for r in metric_rows(c, f, (10000, 10000)) if r["key"] == "classifier_auc")
    sigma = math.sqrt((2 * 3000 + 1) / (12 * 3000 * 3000))   # 30 % test split of 10k each
    assert row["error"] == pytest.approx(sigma, rel=0.02)
    noise = max(0.01, 2 * row["error"], 2 * row["floor_error"])
    assert row["ratio"] == pytest.approx(0.03 / noise, rel=1e-6) and 1.5 < row["ratio"] < 3
    # 0.03 is ~4 sigma: resolved from the MC (p < 1e-3), yet not "far" at this sample size
    assert stats.norm.sf(0.03 / sigma) < 1e-3
    assert verdict(c, f, n_events=(10000, 10000))["level"] == "resolved"


def test_line_names_the_missed_targets() -> None:
    from caloforge.physics.energy_scan import TARGETS

    def row(e, dw, ds):
        r = {"energy": e, "d_response": 0.001, "d_resolution": dw, "d_hits": 0.01,
             "d_shower_max": ds}
        r.update({f"ok_{q}": abs(r[f"d_{q}"]) <= t for q, t in TARGETS.items()})
        return r

    scan = {"targets": TARGETS, "diffs": {"candidate": [row(10.0, 0.30, 0.2), row(50.0, 0.1, -1.5)],
                                          "floor": [row(10.0, 0.1, 0.1), row(50.0, 0.05, 0.0)]}}
    line = verdict(_cand(), FLOOR, scan)["line"]
    assert "met in 0/2 energy bins" in line and "(floor: 2/2)" in line
    assert "width +30.0% at 10 GeV" in line and "shower max -1.50 layers at 50 GeV" in line
