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


# --------------------------------------------------------------------------- bad options, resume
@pytest.mark.parametrize("kw, needle", [
    ({"lr": float("nan")}, "lr: must be a finite number > 0, got nan"),
    ({"lr": -1.0}, "lr: must be a finite number > 0, got -1.0"),
    ({"lr_d": float("inf")}, "lr_d: must be a finite number > 0"),
    ({"image_scale": 0.0}, "image_scale: must be a finite number > 0"),
    ({"flip_prob": 5.0}, r"flip_prob: must be in \[0, 0.5\)"),
    ({"flip_prob": float("nan")}, "flip_prob"),
    ({"joint_weight": -1.0}, r"joint_weight: must be finite numbers >= 0, got \[-1.0\]"),
])
def test_bad_options_are_refused_before_anything_is_created(mc_files, tmp_path, kw, needle) -> None:
    with pytest.raises(UserError, match=needle):
        train(_cfg(mc_files, tmp_path / "run", **kw))
    assert not (tmp_path / "run").exists()


def test_resume_of_a_missing_run_directory_fails(mc_files, tmp_path) -> None:
    with pytest.raises(UserError, match="no run to resume"):
        train(_cfg(mc_files, tmp_path / "nope", resume=True))
    assert not (tmp_path / "nope").exists()


def test_resume_compares_the_data_by_content_not_by_spelling(mc_files, tmp_path, monkeypatch) -> None:
    import shutil

    data = tmp_path / "d.h5"
    shutil.copy(mc_files[0], data)
    train(_cfg(mc_files, tmp_path / "run", data=str(data), epochs=1))
    monkeypatch.chdir(tmp_path)
    # the same file under another name: accepted (epochs=1: the checks run, no epoch is left)
    assert train(_cfg(mc_files, tmp_path / "run", data="./d.h5", epochs=1, resume=True)).epochs_done == 1
    # the same name holding other showers: refused
    from caloforge.mc import simulate

    with ShowerWriter(tmp_path / "other.h5", attrs={"seed": 11}) as w:
        img, e = simulate(np.random.default_rng(99).uniform(2.0, 500.0, 24), seed=99)
        w.append(img, e)
    shutil.copy(tmp_path / "other.h5", data)
    with pytest.raises(UserError, match="training data changed since the run started"):
        train(_cfg(mc_files, tmp_path / "run", data=str(data), epochs=2, resume=True))
    # a checkpoint written before fingerprints existed: the resolved paths are compared
    ckpt = tmp_path / "run" / "checkpoints" / "epoch-0001.json"
    state = json.loads(ckpt.read_text())
    del state["data_fingerprint"]
    ckpt.write_text(json.dumps(state))
    with pytest.raises(UserError, match="cannot resume with data="):
        train(_cfg(mc_files, tmp_path / "run", data=str(mc_files[0]), epochs=2, resume=True))
    assert train(_cfg(mc_files, tmp_path / "run", data="./d.h5", epochs=1,
                      resume=True)).epochs_done == 1


@pytest.fixture(scope="module")
def reference_run(mc_files, tmp_path_factory):
    """An uninterrupted 2-epoch run (the crash/resume tests must end with its weights)."""
    out = tmp_path_factory.mktemp("ref") / "run"
    train(_cfg(mc_files, out))
    return out


def _same_checkpoint(a, b, epoch: int = 2) -> None:
    for name in (f"epoch-{epoch:04d}.safetensors", f"epoch-{epoch:04d}.state.safetensors"):
        ta, tb = load_tensors(a / "checkpoints" / name), load_tensors(b / "checkpoints" / name)
        assert ta.keys() == tb.keys()
        for k in ta:
            assert torch.equal(ta[k], tb[k]), (name, k)


def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_result(mc_files, tmp_path,
                                                                    reference_run,
                                                                    monkeypatch) -> None:
    real = ShowerStream.epoch_batches

    def dies_in_epoch_2(self, epoch):  # type: ignore[no-untyped-def]
        for i, batch in enumerate(real(self, epoch)):
            if epoch == 2 and i == 1:
                raise KeyboardInterrupt  # killed after one batch of epoch 2
            yield batch

    monkeypatch.setattr(ShowerStream, "epoch_batches", dies_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(mc_files, tmp_path / "run"))
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == [
        "epoch-0001.json", "epoch-0001.safetensors", "epoch-0001.state.safetensors"]
    assert train(_cfg(mc_files, tmp_path / "run", resume=True)).epochs_done == 2
    _same_checkpoint(reference_run, tmp_path / "run")


def test_checkpoint_without_its_json_resumes_from_the_previous_one(mc_files, tmp_path,
                                                                  reference_run) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(reference_run, run)
    (run / "checkpoints" / "epoch-0002.json").unlink()  # killed while writing checkpoint 2
    (run / "checkpoints" / "epoch-0002.safetensors").write_bytes(b"\x00" * 10)
    res = train(_cfg(mc_files, run, resume=True))
    assert res.epochs_done == 2 and [h["epoch"] for h in res.history] == [1, 2]
    assert "resumed from epoch 1" in (run / "train.log").read_text()
    _same_checkpoint(reference_run, run)


def test_corrupt_newest_checkpoint_falls_back_to_the_older_one_and_says_so(mc_files, tmp_path,
                                                                          reference_run,
                                                                          capsys) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(reference_run, run)
    (run / "checkpoints" / "epoch-0002.safetensors").write_bytes(b"garbage" * 100)
    res = train(_cfg(mc_files, run, resume=True))
    assert res.epochs_done == 2
    err = [x for x in capsys.readouterr().err.splitlines() if "broken" in x]
    assert len(err) == 1 and "epoch-0002.safetensors" in err[0] and "from epoch 1" in err[0]
    assert "resuming from epoch 1" in (run / "train.log").read_text()
    _same_checkpoint(reference_run, run)
    # nothing usable at all: an error, not a silent fresh start
    for p in (run / "checkpoints").glob("*.safetensors"):
        p.write_bytes(b"garbage")
    with pytest.raises(UserError, match="no usable checkpoint"):
        train(_cfg(mc_files, run, resume=True, epochs=3))
