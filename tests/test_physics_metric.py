"""The 3DGAN shape metric: hand-computed values, invariances, monotonic response, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from caloforge.errors import UserError
from caloforge.physics import ShapeMetric, event_features, metric, metric_breakdown


def _img(*cells: tuple[int, int, int, float]) -> np.ndarray:
    a = np.zeros((3, 3, 3), dtype=np.float32)
    for x, y, z, e in cells:
        a[x, y, z] = e
    return a


# Reference: A = 1 GeV in (0,0,0) and (2,2,2); B = 2 GeV in (1,1,1).
# Candidate: C = A; D = 1 GeV in (1,1,1) and (2,1,1).
A = _img((0, 0, 0, 1.0), (2, 2, 2, 1.0))
B = _img((1, 1, 1, 2.0))
C = A.copy()
D = _img((1, 1, 1, 1.0), (2, 1, 1, 1.0))
REF = (np.stack([A, B]), np.array([50.0, 50.0]))
CAND = (np.stack([C, D]), np.array([50.0, 50.0]))


def test_hand_computed_example() -> None:
    # Profiles (x, y, z): A -> [1,0,1] on every axis (m1 = 1, m2 = 1); B -> [0,2,0] (m1 = 1, m2 = 0).
    # D -> x [0,1,1] (m1 = 1.5, m2 = 0.25), y and z [0,2,0] (m1 = 1, m2 = 0).
    # Event averages: ref m1 = (1, 1, 1), m2 = (0.5, 0.5, 0.5);
    #                 cand m1 = (1.25, 1, 1), m2 = (0.625, 0.5, 0.5).
    # P = 1/2 [ (1/3)(0.25/1) + (1/3)(0.125/0.5) ] = 1/2 [1/12 + 1/12] = 1/12.
    # Mean profiles: ref [0.5, 1, 0.5] on every axis; cand x [0.5, 0.5, 1], y = z = [0.5, 1, 0.5].
    # Q_x = (1/3)(0/0.5 + 0.5/1 + 0.5/0.5) = 0.5, Q_y = Q_z = 0 -> Q = 0.5/3 = 1/6.
    # Bins "all" and "50" hold the same events -> metric = 1/12 + 1/6 = 0.25.
    br = metric_breakdown(REF, CAND, bins=(None, 50.0), min_events=1)
    assert br["metric"] == pytest.approx(0.25, abs=1e-12)
    assert br["moment_term"] == pytest.approx(1 / 12, abs=1e-12)
    assert br["profile_term"] == pytest.approx(1 / 6, abs=1e-12)
    b = br["bins"][1]
    assert b["moments"]["m1"] == pytest.approx({"x": 0.25, "y": 0.0, "z": 0.0})
    assert b["moments"]["m2"] == pytest.approx({"x": 0.25, "y": 0.0, "z": 0.0})
    assert b["profiles"] == pytest.approx({"x": 0.5, "y": 0.0, "z": 0.0})
    # an empty bin is skipped with a note and does not change the means
    br2 = metric_breakdown(REF, CAND, bins=(None, 50.0, 100.0), min_events=1)
    assert br2["metric"] == pytest.approx(0.25, abs=1e-12)
    assert br2["bins"][2]["skipped"] and "fewer than 1 events" in br2["bins"][2]["note"]
    assert br2["n_bins_used"] == 2


def test_zero_reference_cells_and_empty_candidate() -> None:
    # ref = A only: profiles [1,0,1], m1 = 1, m2 = 1; cand = B: [0,2,0], m1 = 1, m2 = 0.
    # Cells with S_ref = 0 are left out: Q_a = (1/2)(|1-0|/1 + |1-0|/1) = 1 -> Q = 1.
    # P = 1/2 [0 + (1/3)(3 x 1)] = 0.5  -> metric 1.5; candidate energy outside = 2 GeV per axis.
    ref = (A[None], np.array([50.0]))
    br = metric_breakdown(ref, (B[None], np.array([50.0])), bins=(None,), min_events=1)
    assert br["metric"] == pytest.approx(1.5)
    assert br["bins"][0]["cand_energy_outside"] == pytest.approx({"x": 2.0, "y": 2.0, "z": 2.0})
    # an all-empty candidate: moments count as 0 (relative difference 1), profiles 0 -> 1 + 1
    zero = (np.zeros((1, 3, 3, 3), np.float32), np.array([50.0]))
    br = metric_breakdown(ref, zero, bins=(None,), min_events=1)
    assert br["metric"] == pytest.approx(2.0)
    assert "only empty showers" in br["bins"][0]["note"]
    assert np.isfinite(br["metric"])


def test_identical_is_zero_and_inputs_agree(mc_small) -> None:
    images, energies = mc_small
    sm = ShapeMetric((images, energies))
    assert sm((images, energies)) == 0.0
    table = event_features(images, energies)
    assert metric(table, (images, energies)) == 0.0
    br = sm.breakdown(table)
    assert br["metric"] == 0.0
    # default bins: all, 50 and 100 GeV are filled; 200..500 GeV are skipped with notes
    used = [b["bin"] for b in br["bins"] if not b["skipped"]]
    assert used == ["all", "50", "100"]
    assert all(b["note"] for b in br["bins"] if b["skipped"])


@pytest.fixture(scope="module")
def mc_other(mc_small):
    """An independent MC sample at the same energies as mc_small (another seed)."""
    from caloforge.mc import simulate

    return simulate(np.array(mc_small[1]), seed=99)


def test_distortions_are_worse_and_monotonic(mc_small, mc_other) -> None:
    images, energies = mc_small
    sm = ShapeMetric((images, energies))
    other, e_other = mc_other
    base = sm((other, e_other))
    rolled = [sm((np.roll(other, k, axis=3), e_other)) for k in (1, 2, 3)]
    scaled = [sm((other * s, e_other)) for s in (1.05, 1.10, 1.20)]
    assert 0 < base < 0.1
    assert base < rolled[0] < rolled[1] < rolled[2]
    assert base < scaled[0] < scaled[1] < scaled[2]
    assert rolled[0] > 2 * base and scaled[0] > base + 0.02


def test_candidate_binned_by_its_own_energies(mc_small) -> None:
    images, energies = mc_small
    sm = ShapeMetric((images, energies))
    # labelling the candidate's 50 GeV events as 100 GeV and vice versa swaps the bins
    swapped = np.where(energies == 50.0, 100.0, np.where(energies == 100.0, 50.0, energies))
    br = sm.breakdown((images, swapped))
    assert br["bins"][0]["P"] == 0.0  # "all" unchanged
    assert br["bins"][1]["Q"] > 0.3   # 50 GeV bin now holds 100 GeV showers


def test_bad_input() -> None:
    with pytest.raises(UserError, match="grid"):
        ShapeMetric(REF)((np.zeros((2, 4, 3, 3), np.float32), np.array([50.0, 50.0])))
    with pytest.raises(UserError, match="2 images but 3 energies"):
        metric(REF, (np.stack([C, D]), np.ones(3)))
    with pytest.raises(UserError, match="expected"):
        metric(REF, (np.zeros((3, 3, 3)), np.ones(3)))
    # every bin below the minimum: one clear error naming the bins
    with pytest.raises(UserError, match="every energy bin was skipped"):
        metric(REF, CAND)
