"""Dask productions: sharding, determinism across worker counts, resume, worker loss, reading.

Uses the GFlash MC when it is installed (caloforge.mc.simulate), else a cheap stub producer.
The Dask tests run a real ``distributed.LocalCluster`` of 2 single-threaded worker processes.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pytest

from caloforge.cli._scale import add_scale_arguments, produce_from_args, wants_scale
from caloforge.errors import UserError
from caloforge.scale import (
    EnergySpec,
    Plan,
    ProducerSpec,
    merge_production,
    open_production,
    produce,
)
from caloforge.scale.plan import shard_seed_sequences

GRID = (25, 25, 25)


def _have_mc() -> bool:
    try:
        from caloforge import mc
    except ImportError:
        return False
    return callable(getattr(mc, "simulate", None))


# ---------------------------------------------------------------- test producers (on workers too)
def make_stub(**_: object):
    """A deterministic stand-in for the MC: energy spread over cells by a seeded rng."""

    def produce_stub(energies: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        w = rng.random((len(energies), *GRID), dtype=np.float32)
        w /= w.sum(axis=(1, 2, 3), keepdims=True)
        return (w * energies[:, None, None, None]).astype(np.float32), energies

    return produce_stub


class _DieWhenRead:
    """Looks like an image array; reading it kills the process (mid-write, temp file open)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def __array__(self, dtype=None, copy=None):
        os._exit(17)


class _Faulty:
    """Wraps a producer; the first call anywhere (marker file) kills its worker process."""

    def __init__(self, inner, marker: str) -> None:
        self.inner, self.marker = inner, marker
        self.seeding = getattr(inner, "seeding", "shard")
        if hasattr(inner, "sample_energies"):
            self.sample_energies = inner.sample_energies

    def __call__(self, energies, seed, **kw):
        images, en = self.inner(energies, seed, **kw)
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return images, en
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return _DieWhenRead(images.shape), en


def make_faulty(marker: str, base: str):
    from caloforge.scale import load_producer

    return _Faulty(load_producer(ProducerSpec.from_json(base)), marker)


BASE = "mc" if _have_mc() else f"{__name__}:make_stub"
SPEC = ProducerSpec.from_json(BASE)
STUB = ProducerSpec(f"{__name__}:make_stub")
make_faulty.seeding = "event" if _have_mc() else "shard"  # as the producer it wraps
KW = {"seed": 7, "shard_size": 8, "energy_range": (10.0, 100.0)}


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      scheduler_kwargs={"dashboard_address": ":0"}) as c:
        yield c.scheduler_address


def _sha(out: Path) -> list[str]:
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "complete"
    return [s["sha256"] for s in m["shards"]]


def _no_temporaries(out: Path) -> None:
    assert not [p.name for p in out.rglob("*.tmp")]


# ---------------------------------------------------------------- plan
def test_shard_seeds_do_not_depend_on_shard_count():
    spawned = np.random.SeedSequence(5).spawn(10)[3]
    e_ss, _ = shard_seed_sequences(5, 3)
    assert e_ss.generate_state(4).tolist() == spawned.spawn(2)[0].generate_state(4).tolist()
    plan_a = Plan(SPEC, 30, 8, 5, EnergySpec.uniform(1, 2))
    plan_b = Plan(SPEC, 100, 8, 5, EnergySpec.uniform(1, 2))
    assert plan_a.n_shards == 4 and plan_a.shard(3, "x").n_events == 6
    assert plan_a.fingerprint() == plan_b.fingerprint()
    ta, tb = plan_a.shard(2, "x"), plan_b.shard(2, "x")
    assert ta.seed == tb.seed
    np.testing.assert_array_equal(ta.draw_energies(), tb.draw_energies())
    assert plan_a.shard(1, "x").seed != ta.seed
    fixed = EnergySpec.fixed([10, 20, 30])
    np.testing.assert_array_equal(fixed.sample(4, 4, np.random.default_rng()), [20, 30, 10, 20])


# ---------------------------------------------------------------- in-process + reading
def test_in_process_production_reads_as_one_dataset(tmp_path):
    out = tmp_path / "run"
    s = produce(out, 28, SPEC, **KW)  # small: the local default runs it in-process
    assert (s.mode, s.n_shards, s.computed, s.skipped) == ("in-process", 4, [0, 1, 2, 3], [])
    m = json.loads((out / "manifest.json").read_text())
    assert m["n_events"] == 28 and m["grid"] == list(GRID) and m["producer"] == SPEC.to_json()
    assert [sh["n_events"] for sh in m["shards"]] == [8, 8, 8, 4]
    assert 10 <= m["energy_min"] <= m["energy_max"] < 100
    assert m["seeding"] == ("event" if _have_mc() else "shard")
    with open_production(out) as prod:
        assert (prod.n_events, prod.grid, len(prod)) == (28, GRID, 28)
        img, en = prod.read(5, 19)  # spans shards 0, 1, 2
        assert img.shape == (14, *GRID) and en.shape == (14,)
        all_img = np.concatenate([c[0] for c in prod.iter_chunks(6)])
        all_en = prod.energies()
    np.testing.assert_array_equal(all_img[5:19], img)
    np.testing.assert_array_equal(all_en[5:19], en)
    with open_production(out / "manifest.json") as prod:
        assert prod.n_shards == 4
    merged = merge_production(out, tmp_path / "all.h5")
    from caloforge.data import open_showers

    with open_showers(merged) as f:
        img2, en2 = f.read()
    np.testing.assert_array_equal(img2, all_img)
    np.testing.assert_array_equal(en2, all_en)
    _no_temporaries(out)


@pytest.mark.skipif(not _have_mc(), reason="caloforge.mc not installed")
def test_mc_production_equals_one_piece_simulation(tmp_path):
    from caloforge import mc

    produce(tmp_path / "a", 21, "mc", workers=0, **KW)
    produce(tmp_path / "b", 21, "mc", workers=0, **{**KW, "shard_size": 5})
    e = mc.sample_energies(21, energy_range=(10.0, 100.0), seed=7)
    images, e = mc.simulate(e, seed=7)
    for run in ("a", "b"):
        with open_production(tmp_path / run) as prod:
            img, en = prod.read()
        np.testing.assert_array_equal(img, images)
        np.testing.assert_allclose(en, e, rtol=1e-7)  # stored as float32


def test_gan_production_equals_runtime_generate(tmp_path):
    runtime = pytest.importorskip("caloforge.runtime")
    spec = ProducerSpec.gan(streams=1, threads=1)
    s = produce(tmp_path / "g", 10, spec, seed=3, shard_size=4, energy_range=(20.0, 200.0))
    assert s.mode == "in-process" and s.manifest["seeding"] == "event"
    e = runtime.uniform_energies(3, 0, 10, 20.0, 200.0)
    ref = runtime.generate(e, streams=1, threads=1, seed=3)
    with open_production(tmp_path / "g") as prod:
        img, en = prod.read()
    np.testing.assert_array_equal(img, ref)
    np.testing.assert_allclose(en, e, rtol=1e-7)


def test_shard_seeded_producer(tmp_path):
    a = produce(tmp_path / "a", 20, STUB, workers=0, **KW)
    produce(tmp_path / "b", 20, STUB, workers=0, **{**KW, "seed": 8})
    assert a.manifest["seeding"] == "shard"
    assert len({s["seed"] for s in a.manifest["shards"]}) == 3
    with open_production(tmp_path / "a") as pa, open_production(tmp_path / "b") as pb:
        ea, eb = pa.energies(), pb.energies()
        assert not np.array_equal(ea, eb) and (ea >= 10).all() and (ea < 100).all()
        img, en = pa.read(0, 20)
    np.testing.assert_allclose(img.sum(axis=(1, 2, 3)), en, rtol=1e-4)


def test_rejects_other_production_and_extends(tmp_path):
    out = tmp_path / "run"
    produce(out, 12, SPEC, workers=0, **KW)
    with pytest.raises(UserError, match="different production"):
        produce(out, 12, SPEC, workers=0, **{**KW, "seed": 8})
    with pytest.raises(UserError, match="not shrunk"):
        produce(out, 8, SPEC, workers=0, **KW)
    with pytest.raises(UserError, match="not an HDF5 file"):
        produce(tmp_path / "x.h5", 8, SPEC, workers=0, **KW)
    from caloforge.data.manifest import production_lock

    with production_lock(out), pytest.raises(UserError, match="another caloforge production"):
        produce(out, 12, SPEC, workers=0, **KW)
    before = _sha(out)
    s = produce(out, 20, SPEC, workers=0, seed=None, shard_size=None)  # seed etc. from manifest
    assert s.skipped == [0] and s.computed == [1, 2]  # shard 1 grew from 4 to 8 events
    assert _sha(out)[0] == before[0]


def test_incomplete_production_is_not_readable(tmp_path):
    out = tmp_path / "run"
    produce(out, 16, SPEC, workers=0, **KW)
    m = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**m, "status": "incomplete"}))
    with pytest.raises(UserError, match="incomplete"):
        open_production(out)


def test_cli_arguments(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_scale_arguments(parser)
    assert not wants_scale(parser.parse_args([]))
    args = parser.parse_args(["--workers", "0", "--shard-size", "5"])
    assert wants_scale(args)
    with pytest.raises(SystemExit):
        parser.parse_args(["--workers", "2", "--scheduler", "tcp://x:1"])
    rc = produce_from_args(args, SPEC, n_events=12, out=str(tmp_path / "run"), seed=1,
                           energies=[10.0, 50.0])
    assert rc == 0
    assert "12 showers in 3 shards (3 computed" in capsys.readouterr().out
    with open_production(tmp_path / "run") as prod:
        np.testing.assert_array_equal(prod.energies()[:4], [10, 50, 10, 50])


# ---------------------------------------------------------------- Dask
def test_same_output_for_any_number_of_workers(tmp_path, cluster):
    ref = produce(tmp_path / "inproc", 28, SPEC, workers=0, **KW)
    two = produce(tmp_path / "two", 28, SPEC, scheduler=cluster, **KW)
    one = produce(tmp_path / "one", 28, SPEC, workers=1, **KW)
    assert (two.mode, two.workers, one.mode, one.workers) == ("scheduler", 2, "local", 1)
    pids = {json.loads(p.read_text())["pid"] for p in (tmp_path / "two/shards").glob("*.json")}
    assert os.getpid() not in pids
    assert _sha(tmp_path / "one") == _sha(tmp_path / "two") == _sha(tmp_path / "inproc")
    assert ref.manifest["fingerprint"] == two.manifest["fingerprint"]
    _no_temporaries(tmp_path / "two")


def test_resume_recomputes_only_missing_or_corrupt_shards(tmp_path, cluster):
    out = tmp_path / "run"
    produce(out, 32, SPEC, scheduler=cluster, **KW)
    before = _sha(out)
    shards = out / "shards"
    mtimes = {p.name: p.stat().st_mtime_ns for p in shards.iterdir()}
    (shards / "shard-00002.h5").unlink()
    with open(shards / "shard-00001.h5", "r+b") as fh:  # silent corruption, same size
        fh.seek(-100, os.SEEK_END)
        data = fh.read(50)
        fh.seek(-100, os.SEEK_END)
        fh.write(bytes(b ^ 0xFF for b in data))
    (shards / ".shard-00003.h5.junk.h5.tmp").write_bytes(b"half")  # left by a killed writer
    s = produce(out, 32, SPEC, scheduler=cluster, **KW)
    assert (s.computed, s.skipped) == ([1, 2], [0, 3])
    assert _sha(out) == before
    for name in ("shard-00000.h5", "shard-00000.json", "shard-00003.h5", "shard-00003.json"):
        assert (shards / name).stat().st_mtime_ns == mtimes[name]
    _no_temporaries(out)
    s = produce(out, 32, SPEC, scheduler=cluster, **KW)
    assert (s.computed, s.mode) == ([], "none")


def test_scheduler_file_and_unreachable_scheduler(tmp_path, cluster):
    from caloforge.scale.production import connect

    # what `dask scheduler --scheduler-file` writes, reduced to the field clients read
    (tmp_path / "sched.json").write_text(json.dumps({"type": "Scheduler", "address": cluster}))
    s = produce(tmp_path / "run", 16, SPEC, scheduler=str(tmp_path / "sched.json"), **KW)
    assert (s.mode, s.workers, s.computed) == ("scheduler", 2, [0, 1])
    with pytest.raises(UserError, match="cannot connect"):
        connect("tcp://127.0.0.1:9", timeout=1)


def test_killed_worker_loses_nothing(tmp_path, cluster):
    marker = tmp_path / "killed"
    faulty = ProducerSpec(f"{__name__}:make_faulty", {"marker": str(marker), "base": BASE})
    out = tmp_path / "run"
    s = produce(out, 32, faulty, scheduler=cluster, **KW)
    assert marker.exists(), "no worker was killed"
    killed_pid = int(marker.read_text())
    assert s.computed == [0, 1, 2, 3]
    records = [json.loads(p.read_text()) for p in sorted((out / "shards").glob("*.json"))]
    assert len(records) == 4 and killed_pid not in {r["pid"] for r in records}
    _no_temporaries(out)
    assert sorted(p.name for p in (out / "shards").iterdir()) == sorted(
        f"shard-{i:05d}.{ext}" for i in range(4) for ext in ("h5", "json"))
    produce(tmp_path / "ref", 32, SPEC, workers=0, **KW)
    with open_production(out) as a, open_production(tmp_path / "ref") as b:
        img_a, en_a = a.read()
        img_b, en_b = b.read()
    np.testing.assert_array_equal(img_a, img_b)
    np.testing.assert_array_equal(en_a, en_b)


def test_a_gan_spec_key_follows_the_model_file_contents(tmp_path, monkeypatch) -> None:
    """A production is resumed only with the same producer: for the GAN that is the model's
    bytes, not its path (the shipped default can be replaced under the same file name)."""
    from caloforge.gan.shipped import DEFAULT_DIR, DIR_ENV, reference_3dgan_dir
    from caloforge.scale import ProducerSpec

    model = tmp_path / "m.onnx"
    model.write_bytes(b"first model")
    k1 = ProducerSpec.gan(model).key()
    model.write_bytes(b"second model, other bytes")
    k2 = ProducerSpec.gan(model).key()
    model.write_bytes(b"first model")
    assert k1 != k2 and ProducerSpec.gan(model).key() == k1
    monkeypatch.setenv(DIR_ENV, str(DEFAULT_DIR))           # the package's default (phase)
    shipped = ProducerSpec.gan().key()
    monkeypatch.setenv(DIR_ENV, str(reference_3dgan_dir()))  # the 3DGAN it replaced
    assert ProducerSpec.gan().key() != shipped
