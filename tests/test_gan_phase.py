"""The ``phase`` architecture: transform, exact zeros, round trips, sub-pixel equivalence, and a
short training that improves the validation score."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from caloforge.gan.checkpoint import load_generator, save_generator
from caloforge.gan.data import CELL_THRESHOLD_GEV
from caloforge.gan.features import calibration_weights, shower_features
from caloforge.gan.phase import PhaseGenerator
from caloforge.gan.transform import ZERO_LEVEL, from_log_numpy, to_log_numpy


def test_log_transform_round_trips_and_matches_its_formula() -> None:
    x = np.array([0.0, 5e-7, 2e-6, 3.2e-4, 0.5, 2.0], dtype=np.float32)
    t = to_log_numpy(x)
    # independent expectation: ln(x / 1e-6) above the threshold, the zero level below
    assert t[0] == ZERO_LEVEL and t[1] == ZERO_LEVEL
    assert t[2] == pytest.approx(math.log(2.0), rel=1e-6)
    assert t[3] == pytest.approx(math.log(320.0), rel=1e-6)
    back = from_log_numpy(t)
    np.testing.assert_array_equal(back[:2], 0.0)
    np.testing.assert_allclose(back[2:], x[2:], rtol=1e-6)


def _generator(seed: int = 0) -> PhaseGenerator:
    torch.manual_seed(seed)
    g = PhaseGenerator()
    with torch.no_grad():  # a non-trivial output: random weights of ordinary size in the last layer
        g.up2.weight.normal_(0.0, 0.3)
        g.up2.bias.fill_(0.0)
    return g.eval()


def test_generated_cells_are_exact_zeros_or_above_the_threshold() -> None:
    g = _generator()
    z = torch.randn(8, g.latent_dim)
    with torch.no_grad():
        x = g(z, torch.tensor([2.0, 5.0, 10.0, 50.0, 100.0, 200.0, 400.0, 500.0]))
    assert x.shape == (8, 25, 25, 25)
    on = x > 0
    assert 0.05 < float(on.float().mean()) < 0.95  # both empty and occupied cells present
    assert float(x[on].min()) >= CELL_THRESHOLD_GEV * (1 - 1e-6)
    assert torch.isfinite(x).all()


def test_phase_generator_round_trips_through_safetensors(tmp_path) -> None:
    g = _generator(1)
    path = save_generator(g, tmp_path / "g.safetensors", {"architecture": "phase"})
    back = load_generator(path)
    assert isinstance(back, PhaseGenerator)
    z, e = torch.randn(4, g.latent_dim), torch.tensor([3.0, 30.0, 300.0, 480.0])
    with torch.no_grad():
        torch.testing.assert_close(back(z, e), g(z, e))


def test_phase_generator_round_trips_through_onnx(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    from caloforge.gan.export import export_onnx

    g = _generator(2)
    path = export_onnx(g, tmp_path / "g.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    z = torch.randn(5, g.latent_dim)
    e = torch.tensor([2.0, 7.0, 70.0, 250.0, 500.0])
    (out,) = sess.run(None, {"z": z.numpy(), "energy": e.numpy()})
    with torch.no_grad():
        ref = g(z, e).numpy()
    np.testing.assert_array_equal(out > 0, ref > 0)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-9)


def test_transposed_convolution_equals_nearest_upsampling_then_convolution_per_phase() -> None:
    """The sub-pixel claim behind the architecture: a stride-2 transposed convolution is a set of
    2^3 low-resolution convolutions, one per output phase. Checked against an explicit
    scatter-add (a second implementation) on a small input."""
    torch.manual_seed(3)
    up = torch.nn.ConvTranspose3d(2, 1, 4, stride=2, padding=1, bias=False)
    x = torch.randn(1, 2, 3, 3, 3)
    out = up(x).detach()
    w = up.weight.detach()  # (in, out, 4, 4, 4)
    full = torch.zeros(1, 1, 8, 8, 8)  # (3 - 1) * 2 + 4 = 8 before removing the padding of 1
    for i in range(3):
        for j in range(3):
            for k in range(3):
                for c in range(2):
                    full[0, 0, 2 * i:2 * i + 4, 2 * j:2 * j + 4, 2 * k:2 * k + 4] += x[0, c, i, j, k] * w[c, 0]
    torch.testing.assert_close(out, full[:, :, 1:7, 1:7, 1:7])


def test_calibrated_response_feature_weights_the_back_section_twice() -> None:
    """One cell of 1 GeV in a front layer and one in a back layer: the calibrated sum is
    1 + f_front / f_back (= 1 + 1.97 for the CLIC ECAL: docs/validation.md)."""
    x = torch.zeros(1, 25, 25, 25)
    x[0, 12, 12, 3] = 1.0
    x[0, 12, 12, 20] = 1.0
    w = torch.from_numpy(calibration_weights())
    f = shower_features(x, (x > 0).float(), torch.tensor([100.0]), w)
    assert float(w[20] / w[3]) == pytest.approx(1.97, rel=0.02)
    assert math.exp(float(f[0, 0])) * 100.0 == pytest.approx(1.0 + float(w[20]), rel=1e-5)
    assert math.expm1(float(f[0, -3])) == pytest.approx(2.0)


def _mc(path, n: int, seed: int):
    from caloforge.mc import simulate_to_file

    e = np.random.default_rng(seed).uniform(2.0, 500.0, n)
    simulate_to_file(path, n, energies=e, seed=seed, chunk_size=256, progress=False)
    return path


@pytest.mark.slow
def test_short_phase_training_improves_the_validation_score(tmp_path) -> None:
    """48 steps of the phase recipe lower the validation feature score below that of the
    untrained generator (the data prior alone), scored on the same noise."""
    from caloforge.gan.phase_stats import phase_statistics
    from caloforge.gan.train import TrainConfig, train
    from caloforge.gan.validation import Validator

    data = _mc(tmp_path / "train.h5", 384, 21)
    val = _mc(tmp_path / "val.h5", 160, 22)
    cfg = TrainConfig(data=str(data), output=str(tmp_path / "run"), architecture="phase",
                      epochs=4, batch_size=32, optimizer="adam", lr=5e-4, lr_d=2e-4,
                      betas=(0.5, 0.9), aux_weight=10.0, aux_groups=4, adv_weight=0.3,
                      validation=str(val), validation_events=160, progress=False, seed=5,
                      threads=2)
    stats = phase_statistics(data, 384)
    torch.manual_seed(cfg.seed)  # the weights train() starts from
    untrained = PhaseGenerator()
    untrained.set_prior(torch.as_tensor(stats["prior"]), torch.as_tensor(stats["prior_knots"]))
    validator = Validator(str(val), 160, cfg.seed + 7919)  # train()'s validation noise
    before = validator(untrained.eval(), torch.device("cpu"))["score"]
    res = train(cfg)
    scores = [h["val_score"] for h in res.history]
    print("validation scores", before, scores)
    assert len(scores) == 4
    assert scores[-1] < before


def test_ring_features_put_energy_and_hits_in_the_right_rings() -> None:
    """A 3 GeV cell on the axis and a 1 GeV cell 3 cells across and 4 up (r = 5 cells, a 3-4-5
    triangle): ring 0 holds 3/4 of the energy, the ring [3.5, 5.5) the rest, one hit each."""
    from caloforge.gan.features import RING_EDGES, ring_features

    x = torch.zeros(1, 25, 25, 25)
    x[0, 12, 12, 5] = 3.0
    x[0, 15, 16, 9] = 1.0
    f = ring_features(x, (x > 0).float())[0]
    n = len(RING_EDGES) - 1
    frac = torch.exp(f[:n]) - 1e-6
    hits = torch.expm1(f[n:])
    expected = torch.zeros(n)
    expected[0], expected[4] = 0.75, 0.25
    torch.testing.assert_close(frac, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(hits, (expected > 0).float())


def test_summary_features_match_hand_computed_moments_and_counts() -> None:
    """Cells of 0.9 GeV at x = 12 and 0.1 GeV at x = 16 (same y = 10), plus a 2e-5 GeV cell:
    m1_x = 12.4, m2_x = 0.9 * 0.16 + 0.1 * 12.96 = 1.44; hits above 3e-4: 2, above 1e-5: 3."""
    from caloforge.gan.features import summary_features
    from caloforge.gan.transform import to_log

    x = torch.zeros(1, 25, 25, 25)
    x[0, 12, 10, 3] = 0.9
    x[0, 16, 10, 4] = 0.1
    x[0, 3, 3, 20] = 2e-5
    f = summary_features(x, to_log(x))[0]
    e = 1.00002
    m1 = (0.9 * 12 + 0.1 * 16 + 2e-5 * 3) / e
    m2 = (0.9 * (12 - m1) ** 2 + 0.1 * (16 - m1) ** 2 + 2e-5 * (3 - m1) ** 2) / e
    torch.testing.assert_close(f[0], torch.tensor(m1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(f[1], torch.tensor(m2), rtol=1e-4, atol=1e-4)
    assert math.expm1(float(f[4])) == pytest.approx(2.0)
    assert math.expm1(float(f[5])) == pytest.approx(3.0)


def test_spectrum_features_count_cells_per_log_energy_bin_in_core_and_halo() -> None:
    from caloforge.gan.features import spectrum_features

    t = torch.full((1, 25, 25, 25), -1.0)
    occ = torch.zeros_like(t)
    for (ix, iy, iz), value in (((12, 12, 0), 3.5),    # core (on the axis), bin centre 3.5
                                ((0, 0, 1), 0.5),      # halo, bin centre 0.5
                                ((0, 1, 1), 1.0),      # halo, half in bin 0.5, half in 1.5
                                ((3, 3, 2), 7.0)):     # unoccupied: not counted
        t[0, ix, iy, iz] = value
        occ[0, ix, iy, iz] = 0.0 if value == 7.0 else 1.0
    counts = torch.expm1(spectrum_features(t, occ))[0].reshape(13, 2)   # (bin, core/halo)
    expected = torch.zeros(13, 2)
    expected[3, 0] = 1.0
    expected[0, 1] = 1.5
    expected[1, 1] = 0.5
    assert torch.allclose(counts, expected, atol=1e-6)


def test_init_generator_takes_a_simpler_phase_start_and_refuses_a_3dgan(tmp_path) -> None:
    """``train --init-generator``: a one-channel phase generator without a library starts a run
    with the library, the sparse head and the layer-occupancy coupling (those tensors start
    from the data; the first convolution is taken over unchanged before training moves it); a
    3DGAN weights file is refused with a one-line UserError naming the problem."""
    from caloforge.errors import UserError
    from caloforge.gan.checkpoint import load_generator, save_generator
    from caloforge.gan.model import Generator
    from caloforge.gan.train import TrainConfig, train

    data = _mc(tmp_path / "train.h5", 64, 23)
    common = dict(data=str(data), architecture="phase", epochs=1, batch_size=32,
                  optimizer="adam", lr=1e-12, lr_d=1e-12, betas=(0.5, 0.9), aux_weight=10.0,
                  aux_groups=2, adv_weight=0.3, progress=False, seed=5, threads=2)
    first = train(TrainConfig(output=str(tmp_path / "plain"), sparse_head=False,
                              layer_energies=False, **common))
    start = load_generator(first.output / "generators" / "epoch-0001.safetensors")
    assert not start.sparse and start.layers is None
    init = first.output / "generators" / "epoch-0001.safetensors"
    res = train(TrainConfig(output=str(tmp_path / "full"), init_generator=str(init), **common))
    full = load_generator(res.output / "generators" / "epoch-0001.safetensors")
    assert full.sparse and full.layers is not None and full.layer_occupancy
    # lr 1e-12: two Adam steps move a weight by ~2e-12 at most
    torch.testing.assert_close(full.conv1.weight, start.conv1.weight, atol=1e-9, rtol=0)
    assert float(full.occ_layer.detach().abs().sum()) > 0   # set from the data, not zeros
    bad = save_generator(Generator(), tmp_path / "3dgan.safetensors")
    with pytest.raises(UserError, match="not a phase generator"):
        train(TrainConfig(output=str(tmp_path / "bad"), init_generator=str(bad), **common))
