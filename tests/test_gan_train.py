"""3DGAN training: data stream, exact resume, checkpoint errors, CLI, export of a run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from caloforge.cli import main
from caloforge.data import ShowerWriter
from caloforge.errors import UserError
from caloforge.gan.checkpoint import load_generator, load_tensors
from caloforge.gan.data import ShowerStream
from caloforge.gan.train import TrainConfig, train


@pytest.fixture(scope="module")
def mc_files(tmp_path_factory):
    """Two tiny MC files (training: 24 events, validation: 24 events), 2-500 GeV."""
    from caloforge.mc import simulate

    d = tmp_path_factory.mktemp("gan_data")
    paths = []
    for seed, name in ((11, "train.h5"), (12, "val.h5")):
        e = np.random.default_rng(seed).uniform(2.0, 500.0, 24)
        img, e = simulate(e, seed=seed)
        with ShowerWriter(d / name, attrs={"seed": seed}) as w:
            w.append(img, e)
        paths.append(d / name)
    return paths


def _cfg(mc_files, out, **kw) -> TrainConfig:
    base = dict(data=str(mc_files[0]), output=str(out), epochs=2, batch_size=2, seed=7,
                max_events=4, optimizer="adam", lr=1e-4, gen_steps=1, aux_weight=1.0,
                aux_groups=2, shower_prior=True, progress=False, bn_recalibration_batches=2,
                bn_recalibration_batch=8)
    base.update(kw)
    return TrainConfig(**base)


def test_stream_is_seeded_sharded_and_complete(mc_files) -> None:
    s = ShowerStream(mc_files[0], batch_size=4, seed=1, image_scale=100.0, block_events=6)
    a = [e for _, e in s.epoch_batches(1)]
    b = [e for _, e in s.epoch_batches(1)]
    c = [e for _, e in s.epoch_batches(2)]
    assert len(a) == s.batches_per_epoch == 6
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    assert sorted(np.concatenate(a).tolist()) == sorted(np.concatenate(c).tolist())
    ranks = [ShowerStream(mc_files[0], 4, 1, 100.0, rank=r, world=2, block_events=6) for r in (0, 1)]
    seen = [np.concatenate([e for _, e in r.epoch_batches(1)]) for r in ranks]
    assert len(set(seen[0].tolist()) & set(seen[1].tolist())) == 0
    assert ranks[0].batches_per_epoch == ranks[1].batches_per_epoch
    img, _ = next(iter(s.epoch_batches(1)))
    assert img.dtype == np.float32 and img.min() >= 0
    assert ((img == 0) | (img >= 1e-6 * 100)).all()


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(mc_files, tmp_path) -> None:
    full = train(_cfg(mc_files, tmp_path / "full", validation=str(mc_files[1]),
                      validation_events=20))
    assert full.epochs_done == 2 and full.best_epoch in (1, 2)
    assert (tmp_path / "full" / "best.safetensors").is_file()
    rows = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and all(np.isfinite(r["val_metric"]) for r in rows)
    assert {"d_real", "d_fake", "g_bce", "g_ecal", "g_aux_profile"} <= set(rows[0])

    train(_cfg(mc_files, tmp_path / "part", epochs=1))
    with pytest.raises(UserError, match="pass --resume"):
        train(_cfg(mc_files, tmp_path / "part", epochs=2))
    with pytest.raises(UserError, match="cannot resume with seed"):
        train(_cfg(mc_files, tmp_path / "part", epochs=2, resume=True, seed=8))
    resumed = train(_cfg(mc_files, tmp_path / "part", epochs=2, resume=True))
    assert resumed.epochs_done == 2
    a = load_tensors(tmp_path / "full" / "checkpoints" / "epoch-0002.safetensors")
    b = load_tensors(tmp_path / "part" / "checkpoints" / "epoch-0002.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    sa = load_tensors(tmp_path / "full" / "checkpoints" / "epoch-0002.state.safetensors")
    sb = load_tensors(tmp_path / "part" / "checkpoints" / "epoch-0002.state.safetensors")
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    gen = load_generator(tmp_path / "part" / "checkpoints" / "epoch-0002.safetensors")
    with torch.no_grad():
        out = gen(torch.randn(2, 200), torch.tensor([10.0, 300.0]))
    assert out.shape == (2, 25, 25, 25) and torch.isfinite(out).all() and (out >= 0).all()


def test_cli_train_and_export_and_errors(mc_files, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    rc = main(["train", "--data", str(mc_files[0]), "--output", str(run), "--epochs", "1",
               "--batch-size", "2", "--max-events", "2", "--gen-steps", "1", "--no-progress",
               "--bn-recalibration", "1",
               "--validation", str(mc_files[1]), "--validation-events", "20"])
    assert rc == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["epochs_done"] == 1
    dest = tmp_path / "default"
    from caloforge.gan.ship import export_default

    card = export_default(run, test_data=str(mc_files[1]), floor_data=str(mc_files[0]),
                          reproduce="caloforge train ...", dest=dest)
    assert card["energy_range_gev"][0] >= 2.0 and card["energy_range_gev"][1] <= 500.0
    assert np.isfinite(card["metric"]["metric"]) and np.isfinite(card["mc_floor"]["metric"])
    assert card["onnx_parity_rel_l2"] is None or card["onnx_parity_rel_l2"] < 1e-5
    assert card["data_set"]["mc_seed"] == 11
    assert {p.name for p in dest.iterdir()} == {"generator.safetensors", "generator.onnx",
                                                "model_card.json"}
    # user errors: exit code 2, one line naming the file
    assert main(["train", "--data", str(tmp_path / "nope.h5"), "--output", str(tmp_path / "x")]) == 2
    assert "nope.h5: no such file" in capsys.readouterr().err
    (run / "best.safetensors").write_bytes(b"garbage")
    assert main(["train", "--export-default", str(run)]) == 2
    assert "best.safetensors: corrupt or unreadable" in capsys.readouterr().err
    assert main(["train", "--export-default", str(run), "--epoch", "9"]) == 2
    assert "epoch-0009.safetensors: no such generator file" in capsys.readouterr().err
